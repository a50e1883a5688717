// Starting a worker by running this executable again (start::spawn, the only start method
// Windows has): CreateProcessW of GetModuleFileNameW(nullptr) with the caller's command line.
// The child inherits exactly its own handles (its channel, its arena, and copies of the standard
// handles) through PROC_THREAD_ATTRIBUTE_HANDLE_LIST, learns their values from
// PARALLEL_WORKER_HANDLES, and finds its marker in PARALLEL_WORKER, which
// parallel::spawn_main reads. It is put in a job object that kills it when this process ends
// (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE): the twin of PR_SET_PDEATHSIG. No shell is involved.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cwchar>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "process.hpp"

namespace parallel::detail::os {

inline constexpr const char* worker_marker = "PARALLEL_WORKER";
inline constexpr const char* worker_handles = "PARALLEL_WORKER_HANDLES";

/// The job every spawned child joins; its handle closes when this process ends, and then the
/// system ends the children. Null when the system refuses (e.g. a job that forbids nesting):
/// children then still end when their channel breaks, but not in the middle of a task.
inline HANDLE worker_job() noexcept {
  static const HANDLE job = [] {
    HANDLE h = ::CreateJobObjectW(nullptr, nullptr);
    if (h == nullptr) return h;
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits{};
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if (!::SetInformationJobObject(h, JobObjectExtendedLimitInformation, &limits, sizeof limits)) {
      ::CloseHandle(h);
      return HANDLE{nullptr};
    }
    return h;
  }();
  return job;
}

/// An inheritable copy of `h`, for one CreateProcess (the original stays non-inheritable, so a
/// process another thread starts meanwhile gets nothing of ours through it).
inline owned_handle inheritable_copy(HANDLE h) {
  HANDLE copy = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &copy, 0, TRUE,
                         DUPLICATE_SAME_ACCESS))
    throw_last_error("DuplicateHandle(for a worker)");
  return owned_handle(copy);
}

inline std::wstring hex_handle(HANDLE h) {
  wchar_t text[24];
  std::swprintf(text, 24, L"%llx",
                static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(h)));
  return text;
}

/// This process's environment without our two variables, plus `extra` entries ("NAME=value"),
/// as the double-NUL-terminated block CreateProcessW takes.
inline std::vector<wchar_t> environment_with(const std::vector<std::wstring>& extra) {
  std::vector<wchar_t> block;
  const std::unique_ptr<wchar_t, BOOL(WINAPI*)(LPWCH)> strings(::GetEnvironmentStringsW(),
                                                               &::FreeEnvironmentStringsW);
  const std::wstring marker = widen(worker_marker) + L"=";
  const std::wstring handles = widen(worker_handles) + L"=";
  for (const wchar_t* e = strings.get(); e != nullptr && *e != L'\0'; e += std::wcslen(e) + 1) {
    const std::wstring entry(e);
    if (entry.compare(0, marker.size(), marker) == 0) continue;
    if (entry.compare(0, handles.size(), handles) == 0) continue;
    block.insert(block.end(), entry.begin(), entry.end());
    block.push_back(L'\0');
  }
  for (const std::wstring& entry : extra) {
    block.insert(block.end(), entry.begin(), entry.end());
    block.push_back(L'\0');
  }
  block.push_back(L'\0');
  return block;
}

/// Runs this executable again with `handles` (channel, arena) inherited and named in
/// PARALLEL_WORKER_HANDLES, and `marker` as PARALLEL_WORKER; returns its pid.
inline pid_type spawn_self(std::initializer_list<HANDLE> handles, const std::string& marker) {
  std::vector<owned_handle> copies;
  std::vector<HANDLE> inherited;
  std::wstring handle_values;
  for (HANDLE h : handles) {
    copies.push_back(inheritable_copy(h));
    inherited.push_back(copies.back().get());
    handle_values += (handle_values.empty() ? L"" : L",") + hex_handle(copies.back().get());
  }
  // The standard handles reach the child only when they are in the list too: copies of them.
  HANDLE standard[3] = {nullptr, nullptr, nullptr};
  const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
  for (int i = 0; i < 3; ++i) {
    HANDLE h = ::GetStdHandle(which[i]);
    if (h == nullptr || h == INVALID_HANDLE_VALUE) continue;
    HANDLE copy = nullptr;
    if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &copy, 0, TRUE,
                           DUPLICATE_SAME_ACCESS))
      continue;  // not a handle that can be passed on (e.g. closed): the child goes without
    copies.emplace_back(copy);
    inherited.push_back(copy);
    standard[i] = copy;
  }

  SIZE_T list_size = 0;
  ::InitializeProcThreadAttributeList(nullptr, 1, 0, &list_size);
  const std::unique_ptr<std::byte[]> list_memory(new std::byte[list_size]);
  auto* list = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(list_memory.get());
  if (!::InitializeProcThreadAttributeList(list, 1, 0, &list_size))
    throw_last_error("InitializeProcThreadAttributeList");
  struct cleanup {
    LPPROC_THREAD_ATTRIBUTE_LIST l;
    ~cleanup() { ::DeleteProcThreadAttributeList(l); }
  } delete_list{list};
  if (!::UpdateProcThreadAttribute(list, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherited.data(),
                                   inherited.size() * sizeof(HANDLE), nullptr, nullptr))
    throw_last_error("UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST)");

  STARTUPINFOEXW info{};
  info.StartupInfo.cb = sizeof info;
  info.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
  info.StartupInfo.hStdInput = standard[0];
  info.StartupInfo.hStdOutput = standard[1];
  info.StartupInfo.hStdError = standard[2];
  info.lpAttributeList = list;

  const std::wstring executable = module_path(nullptr);
  std::wstring command_line = ::GetCommandLineW();
  std::vector<wchar_t> environment = environment_with(
      {widen(worker_marker) + L"=" + widen(marker), widen(worker_handles) + L"=" + handle_values});

  std::fflush(nullptr);
  PROCESS_INFORMATION child{};
  // Suspended until it is in the job: it must not run (or start children of its own) outside.
  if (!::CreateProcessW(
          executable.c_str(), command_line.data(), nullptr, nullptr, TRUE,
          EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT | CREATE_SUSPENDED,
          environment.data(), nullptr, &info.StartupInfo, &child))
    throw_last_error("CreateProcess of this executable");
  if (HANDLE job = worker_job()) ::AssignProcessToJobObject(job, child.hProcess);
  ::ResumeThread(child.hThread);
  ::CloseHandle(child.hThread);
  const auto pid = static_cast<pid_type>(child.dwProcessId);
  children::add(pid, child.hProcess);
  return pid;
}

/// The marker of a spawned worker, or nullptr in a normal run.
inline const char* worker_marker_value() noexcept { return std::getenv(worker_marker); }

/// The handle a spawned worker inherited as the `index`th of spawn_self's list (0: its
/// channel, 1: its arena), or nullptr when there is none.
inline HANDLE spawned_handle(int index) noexcept {
  const char* values = std::getenv(worker_handles);
  for (int i = 0; values != nullptr && *values != '\0'; ++i) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(values, &end, 16);
    if (end == values) return nullptr;
    if (i == index) {
      HANDLE h = reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>(value));
      // Ours alone from now on: a process this worker starts inherits none of it.
      ::SetHandleInformation(h, HANDLE_FLAG_INHERIT, 0);
      return h;
    }
    values = *end == ',' ? end + 1 : end;
  }
  return nullptr;
}

/// A spawned worker forgets its marker (programs it starts are not workers).
inline void clear_worker_marker() noexcept {
  ::SetEnvironmentVariableA(worker_marker, nullptr);
  ::SetEnvironmentVariableA(worker_handles, nullptr);
  ::_putenv((std::string(worker_marker) + "=").c_str());
  ::_putenv((std::string(worker_handles) + "=").c_str());
}

}  // namespace parallel::detail::os
