// The caller's side of the process backends: a set of worker processes, one socketpair and one
// shared arena each, and the loop that sends them jobs and collects their results. One thread
// drives an engine (the caller's thread for a fork-per-call map, the pool's I/O thread for a
// process_pool); the jobs' sinks are called on that thread. What happens to the jobs (which
// worker gets the next one, a result, a worker's loss, a cancel) is the job core's (job_core.hpp),
// shared with the MPI cluster; the engine starts and watches the workers and moves the bytes. Its
// members are split by concern: engine_slot.hpp (its configuration and what it keeps of each
// worker), engine_loop.hpp (the loop's and a driving caller's rounds), engine_workers.hpp,
// engine_wire.hpp and engine_deadlines.hpp.
//
// Every wait here has a way out: a worker's end is seen at once (its process watch fires, its
// channel reaches EOF), a job's timeout is checked against the time the worker says the item
// started (shared memory, no message needed), and a frame that breaks the protocol stops that
// worker. The job the dead worker was running fails; the jobs queued behind it go to the other
// workers; the slot gets a new worker.
//
// A worker that cannot be started (no descriptors, processes or memory left, a forkserver that
// refuses) leaves its slot empty: the engine goes on with the workers it has, tries the slot
// again on later work, and fails the waiting jobs with spawn_error only when no worker is left.
// Ending a worker never waits without a bound: one that does not end within a short grace period
// after its channel closed (stopped by a debugger, frozen) is killed. Every signal goes to a
// worker the engine started and has not reaped, through its process watch where there is one.
#pragma once

#include "engine_class.hpp"
#include "engine_deadlines.hpp"
#include "engine_loop.hpp"
#include "engine_wire.hpp"
#include "engine_workers.hpp"
