// <mpi.h>, C API only: Open MPI's and MPICH's deprecated C++ bindings (which warn under
// -Wcast-function-type and pull in <iostream>) stay out.
#pragma once

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
