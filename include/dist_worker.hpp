// dist-worker: a header-only C++17 layer over the C API of dist_worker.h.
//
// Nothing here but the standard library and the C API; every type is a thin,
// zero-surprise wrapper over the C one, and `get()` / `c_task()` / `raw()`
// give the C object back wherever one is needed.
//
// ERRORS: one design throughout. Every fallible operation comes twice:
//
//   foo(...)      throws dist::Error (a std::runtime_error) carrying status()
//                 (the DistStatus), message() (dist_last_error_message(),
//                 captured at the failing call; it starts with the C
//                 function's name) and operation(); what() is
//                 "<STATUS>: <message>". It returns the value, if any.
//   try_foo(...)  never throws dist::Error: it returns a dist::Status (ok(),
//                 status(), message()) or, when there is a value, a
//                 dist::Result<T> (ok(), status(), message(), value(),
//                 value_or(), *, ->). Both are [[nodiscard]].
//
// try_ functions may still throw std::bad_alloc (and whatever moving a
// callable throws); they report everything the library reports as a value.
// Checks the C++ layer makes itself (an empty Worker, a group whose members
// do not add up, the wrong number of placement indices) come back the same
// way, with their own message (dist_last_error_message() is then untouched).
// Worker::shutdown() and Scope::end() return a Status (a shutdown's report is
// what one calls it for); destructors never throw and ignore statuses.
//
// OWNERSHIP:
//   dist::Worker     move-only owner of a DistWorker; its destructor shuts it
//                    down. It also owns every callable registered on it
//                    (heap-allocated, stable addresses), and frees them only
//                    once the pool is gone: after a shutdown that passed its
//                    deadline (DIST_ERR_TIMEOUT) a pool thread may still be
//                    inside a callable, so the callables are then
//                    deliberately leaked rather than freed under it.
//   dist::WorkerRef  non-owning view with the submit API (dispatch, wait,
//                    drain, scopes, alloc); what an orchestration function
//                    gets for its inner level. Worker converts to it.
//   dist::Registrar  a WorkerRef that can also register workers, keeping
//                    their callables alive; what a spawned level's setup
//                    function gets. Worker has the same registration API.
//   dist::Scope      RAII scope_begin / scope_end (`auto s = w.scope();`);
//                    scopes of a Worker end innermost first (see Scope).
//   dist::Future     a task id with its worker: wait(), wait_for(duration),
//                    tensor(); valid, like the id, until the next drain.
//                    Those of a Worker may outlive it (LIFETIME below).
//   dist::Task       a task builder that owns its DistTaskArgs / DistTensor
//                    arrays: Task(dist::Sub, 7).input(t).output(u).scalar(3).
//
// LIFETIME: a Worker shares a small control block with the Futures and
// Scopes it made, which may outlive it and be used on any thread. Every call
// through the Worker, its Futures and its Scopes is counted there.
// shutdown() (so the destructor, and add_level adopting the Worker too)
// first refuses new calls, then waits for the counted ones to return, and
// only then hands the DistWorker to dist_worker_shutdown (or
// dist_worker_add_level), so that no call starts on a freed DistWorker. A
// refused call reports DIST_ERR_SHUT_DOWN with a message of its own ("... is
// shutting down", "... is gone"); an empty Worker (moved from) reports
// DIST_ERR_NULL_ARGUMENT. Waits go in slices of dist::wait_slice
// (dist_worker_wait_timeout in a loop, reported as the one wait), so a wait
// never holds a shutdown off for more than a slice: a wait under way when
// another thread shuts the Worker down returns DIST_ERR_SHUT_DOWN (the
// tasks' outcome is for shutdown() to report), and a drain() on another
// thread may release the id between two slices (the wait then reports
// INVALID_ARGUMENT, as after the drain). Calls that block inside the library
// are not cut: a drain() on another thread holds shutdown() off until it
// returns, a dispatch or alloc waiting for heap space for up to
// alloc_timeout. WorkerRef and Registrar are unchecked views, as the C
// handle is, and so are the Futures and Scopes they make.
//
// CALLABLES are any callable objects (lambdas with captures, std::function,
// function pointers), copied or moved into the Worker:
//
//   task   R fn(const dist::Call &call)                 add_thread, spawn
//   init   R init()                                     spawn_with_init
//   orch   R orch(dist::WorkerRef inner, const dist::Call &call)
//                                                       add_level, spawn_level
//   setup  R setup(dist::Registrar &inner)              spawn_level
//
// where R is void (success) or an integral error code (0 = success; bool is
// refused as ambiguous). No exception crosses the C boundary: one thrown by
// a callable is caught in the trampoline, its what() is passed to
// dist_child_set_error_message and the callable returns
// dist::exception_code, so the task fails with DIST_ERR_TASK_FAILED and a
// message ending in the exception's text. Throw dist::TaskFailure(code,
// text) to choose the code. An orchestration function's exception fails
// the outer task the same way ("the orchestration function returned error
// -100: <what()>"); an inner task's failure comes up with its full path.
//
// Each registration keeps its own copy of the callable, and the library
// never runs one registration on two threads at once, so mutable lambdas
// are fine; state shared between registrations is the caller's to guard.
// Callables of spawn / spawn_with_init / spawn_level run in forked children,
// on the child's copy of the Worker's memory (the fork copied it), so
// captured values are there; writes to captured host variables stay in the
// child (share results through the heap ring: alloc, OUTPUT tensors).
// Captures by value live as long as the Worker keeps the callable; what a
// callable captures by reference must outlive the Worker's shutdown, and a
// THREAD callable that overruns the shutdown deadline (shutdown() returns
// DIST_ERR_TIMEOUT) may still run on its pool thread after shutdown
// returned, so capture by value (a std::shared_ptr) what it may touch then.
//
// Threads: as documented per function in dist_worker.h. The C++ layer adds
// the call count of LIFETIME (lock-free), a mutex over the registration
// list (registrations from several threads are fine, as in C) and one over
// the order of a Worker's open Scopes (held around scope_begin / scope_end).
#ifndef DIST_WORKER_HPP
#define DIST_WORKER_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L))
#error "dist_worker.hpp needs C++17 or later (dist_worker.h alone is C and C++11)"
#endif

#include "dist_worker.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace dist {

// ---------------------------------------------------------------------------
// Small vocabulary
// ---------------------------------------------------------------------------

/// Identifies a dispatched task; never 0.
using TaskId = DistTaskId;

/// Which pool runs a task.
enum class WorkerType : DistWorkerType {
    NextLevel = DIST_WORKER_NEXT_LEVEL,  ///< a chip, or a whole lower level
    Sub = DIST_WORKER_SUB,               ///< a helper function
};
inline constexpr WorkerType NextLevel = WorkerType::NextLevel;
inline constexpr WorkerType Sub = WorkerType::Sub;

/// Element type of a tensor (DistTensor::dtype).
enum class DType : DistDataType {
    Float32 = DIST_FLOAT32,
    Float16 = DIST_FLOAT16,
    Int32 = DIST_INT32,
    Int16 = DIST_INT16,
    Int8 = DIST_INT8,
    UInt8 = DIST_UINT8,
    BFloat16 = DIST_BFLOAT16,
    Int64 = DIST_INT64,
    UInt64 = DIST_UINT64,
};

/// How a task uses a tensor argument (its dependency tag).
enum class Arg : DistTensorArgType {
    Input = DIST_ARG_INPUT,                    ///< waits for the last writer
    Output = DIST_ARG_OUTPUT,                  ///< becomes the writer; data 0 = engine allocates
    InOut = DIST_ARG_INOUT,                    ///< waits, then becomes the writer
    OutputExisting = DIST_ARG_OUTPUT_EXISTING, ///< becomes the writer of existing memory
    NoDep = DIST_ARG_NO_DEP,                   ///< no dependency tracking
};

/// The error code a callable returns when it lets an exception escape
/// (other than a dist::TaskFailure, which names its own code).
inline constexpr std::int32_t exception_code = -100;

/// "MAJOR.MINOR.PATCH" of the library actually loaded (dist_worker_version()).
inline std::string_view version() noexcept {
    const char *v = dist_worker_version();
    return v ? std::string_view(v) : std::string_view();
}

/// Name of a status value ("DIST_OK", "DIST_ERR_TIMEOUT", ...).
inline std::string_view status_name(DistStatus status) noexcept {
    const char *n = dist_status_str(status);
    return n ? std::string_view(n) : std::string_view();
}

/// A non-owning view of `size()` contiguous T (std::span's small subset, the
/// same type in C++17 and C++20). Built from a pointer and a count, a C
/// array, a container with data() and size(), or (for const T) a braced list
/// that lives until the end of the full expression.
template <class T>
class Span {
public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using size_type = std::size_t;
    using iterator = T *;

    constexpr Span() noexcept = default;
    constexpr Span(T *data, std::size_t size) noexcept : data_(size ? data : nullptr), size_(data ? size : 0) {}
    template <std::size_t N>
    constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    template <class C,
              class = std::enable_if_t<!std::is_same_v<std::decay_t<C>, Span> &&
                                       std::is_convertible_v<decltype(std::data(std::declval<C &>())), T *> &&
                                       std::is_integral_v<decltype(std::size(std::declval<C &>()))>>>
    constexpr Span(C &&container) noexcept : Span(std::data(container), std::size(container)) {}
    template <class U = T, class = std::enable_if_t<std::is_const_v<U>>>
    constexpr Span(std::initializer_list<value_type> list) noexcept : Span(list.begin(), list.size()) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr T &front() const noexcept { return data_[0]; }
    constexpr T &back() const noexcept { return data_[size_ - 1]; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Errors: Error (thrown), Status and Result<T> (returned by try_ functions)
// ---------------------------------------------------------------------------

class Status;

/// Thrown by every throwing operation: what() is "<STATUS>: <message>"
/// (the message starts with the C function's name, as the library's do);
/// status() the DistStatus, message() the library's message.
class Error : public std::runtime_error {
public:
    Error(DistStatus status, std::string_view message, const char *operation = nullptr)
        : std::runtime_error(compose(status, message)),
          status_(status),
          offset_(message.empty() ? 0 : status_name(status).size() + 2),
          size_(message.size()),
          operation_(operation) {}
    explicit Error(const Status &status);

    /// The DistStatus of the failure.
    DistStatus status() const noexcept { return status_; }
    /// The library's message (dist_last_error_message() at the failing call).
    std::string_view message() const noexcept { return std::string_view(what() + offset_, size_); }
    /// The name of the status ("DIST_ERR_TASK_FAILED").
    std::string_view name() const noexcept { return status_name(status_); }
    /// The C function that failed (a static string), or nullptr.
    const char *operation() const noexcept { return operation_; }

private:
    static std::string compose(DistStatus status, std::string_view message) {
        std::string s(status_name(status));
        if (!message.empty()) s.append(": ").append(message);
        return s;
    }
    DistStatus status_;
    std::size_t offset_, size_;  // where message() is in what()
    const char *operation_;
};

/// The outcome of a try_ operation without a value: DIST_OK, or a failure
/// with the library's message.
class [[nodiscard]] Status {
public:
    /// DIST_OK.
    Status() noexcept = default;
    Status(DistStatus status, std::string message, const char *operation = nullptr)
        : status_(status), message_(std::move(message)), operation_(operation) {}

    /// `status` with the calling thread's dist_last_error_message() (read at
    /// once, so call it right after the failing C call).
    static Status from(DistStatus status, const char *operation = nullptr) {
        if (status == DIST_OK) return Status();
        const char *m = dist_last_error_message();
        return Status(status, m ? m : "", operation);
    }

    bool ok() const noexcept { return status_ == DIST_OK; }
    explicit operator bool() const noexcept { return ok(); }
    DistStatus status() const noexcept { return status_; }
    std::string_view message() const noexcept { return message_; }
    std::string_view name() const noexcept { return status_name(status_); }
    const char *operation() const noexcept { return operation_; }

    /// Throws dist::Error unless ok().
    void throw_if_error() const {
        if (!ok()) throw Error(*this);
    }

private:
    DistStatus status_ = DIST_OK;
    std::string message_;
    const char *operation_ = nullptr;
};

inline Error::Error(const Status &status) : Error(status.status(), status.message(), status.operation()) {}

/// Throws dist::Error for a C call that did not return DIST_OK: for mixing
/// raw C calls (on w.get()) into C++ code.
inline void check(DistStatus status, const char *operation = nullptr) {
    Status::from(status, operation).throw_if_error();
}

/// A value, or the Status of why there is none (a small std::expected).
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}
    /// A failure; an OK status without a value is turned into DIST_ERR_BAD_STATE.
    Result(Status failure) : status_(std::move(failure)) {
        if (status_.ok()) status_ = Status(DIST_ERR_BAD_STATE, "dist::Result built from an OK status without a value");
    }

    bool ok() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    DistStatus status() const noexcept { return status_.status(); }
    std::string_view message() const noexcept { return status_.message(); }
    /// The whole Status (DIST_OK when there is a value).
    const Status &error() const noexcept { return status_; }

    /// The value; throws dist::Error when there is none.
    T &value() & { return must(), *value_; }
    const T &value() const & { return must(), *value_; }
    T &&value() && { return must(), std::move(*value_); }
    template <class U>
    T value_or(U &&fallback) const & {
        return value_ ? *value_ : static_cast<T>(std::forward<U>(fallback));
    }
    template <class U>
    T value_or(U &&fallback) && {
        return value_ ? std::move(*value_) : static_cast<T>(std::forward<U>(fallback));
    }
    /// Unchecked access (ok() must be true).
    T &operator*() & noexcept { return *value_; }
    const T &operator*() const & noexcept { return *value_; }
    T *operator->() noexcept { return &*value_; }
    const T *operator->() const noexcept { return &*value_; }

private:
    void must() const {
        if (!value_) throw Error(status_);
    }
    Status status_;
    std::optional<T> value_;
};

/// Thrown from a callable to fail its task with this code and message (a
/// code of 0 would mean success, so it becomes dist::exception_code).
class TaskFailure : public std::runtime_error {
public:
    TaskFailure(std::int32_t code, const std::string &message) : std::runtime_error(message), code_(code) {}
    TaskFailure(std::int32_t code, const char *message) : std::runtime_error(message), code_(code) {}
    std::int32_t code() const noexcept { return code_ != 0 ? code_ : exception_code; }

private:
    std::int32_t code_;
};

/// From inside a callable: the text that travels back with its non-zero
/// return (dist_child_set_error_message). Throwing does this for you.
inline void set_task_message(const char *message) noexcept { (void)dist_child_set_error_message(message); }
inline void set_task_message(const std::string &message) noexcept { set_task_message(message.c_str()); }

// ---------------------------------------------------------------------------
// Options, tensors, call configs
// ---------------------------------------------------------------------------

/// DistWorkerOptions with the library's defaults (dist_worker_options_init)
/// and chainable setters: Options().level(4).heap_ring_size(1 << 20).
/// Durations are clamped to the C fields' range (negative = 0).
class Options {
public:
    Options() noexcept { dist_worker_options_init(&o_); }
    explicit Options(const DistWorkerOptions &raw) noexcept : o_(raw) {}

    /// Level in the hierarchy (default 3 = host).
    Options &level(std::uint32_t level) noexcept { o_.level = level; return *this; }
    /// Bytes of the shared heap ring (default 64 MiB; 0 = the default).
    Options &heap_ring_size(std::uint64_t bytes) noexcept { o_.heap_ring_size = bytes; return *this; }
    /// How long dispatch / alloc wait for heap space (default 5 s; 0 = fail at once).
    Options &alloc_timeout(std::chrono::milliseconds t) noexcept { o_.alloc_timeout_ms = u32(t.count()); return *this; }
    /// A task running longer ends with DIST_ERR_TIMEOUT (default 0 = no deadline).
    Options &task_timeout(std::chrono::milliseconds t) noexcept { o_.task_timeout_ms = u32(t.count()); return *this; }
    /// One deadline for all of shutdown (default 10 s; 0 = no limit).
    Options &shutdown_timeout(std::chrono::milliseconds t) noexcept {
        o_.shutdown_timeout_ms = u32(t.count()); return *this;
    }
    /// How long start waits for spawned children and levels (default 30 s; 0 = no limit).
    Options &start_timeout(std::chrono::milliseconds t) noexcept { o_.start_timeout_ms = u32(t.count()); return *this; }
    /// Spin of a library-run worker before it sleeps (default 50 µs).
    Options &worker_spin(std::chrono::microseconds t) noexcept { o_.worker_spin_us = u32(t.count()); return *this; }
    /// Spin of the dispatcher thread before it sleeps (default 50 µs).
    Options &dispatcher_spin(std::chrono::microseconds t) noexcept {
        o_.dispatcher_spin_us = u32(t.count()); return *this;
    }
    /// Spin of a waiting caller before it sleeps (default 5 µs).
    Options &wait_spin(std::chrono::microseconds t) noexcept { o_.wait_spin_us = u32(t.count()); return *this; }
    /// Longest sleep between polls of caller-owned children (default 50 µs).
    Options &poll_interval(std::chrono::microseconds t) noexcept { o_.poll_interval_us = u32(t.count()); return *this; }

    std::uint32_t level() const noexcept { return o_.level; }
    std::uint64_t heap_ring_size() const noexcept { return o_.heap_ring_size; }
    std::chrono::milliseconds alloc_timeout() const noexcept { return std::chrono::milliseconds(o_.alloc_timeout_ms); }
    std::chrono::milliseconds task_timeout() const noexcept { return std::chrono::milliseconds(o_.task_timeout_ms); }
    std::chrono::milliseconds shutdown_timeout() const noexcept {
        return std::chrono::milliseconds(o_.shutdown_timeout_ms);
    }
    std::chrono::milliseconds start_timeout() const noexcept { return std::chrono::milliseconds(o_.start_timeout_ms); }
    std::chrono::microseconds worker_spin() const noexcept { return std::chrono::microseconds(o_.worker_spin_us); }
    std::chrono::microseconds dispatcher_spin() const noexcept {
        return std::chrono::microseconds(o_.dispatcher_spin_us);
    }
    std::chrono::microseconds wait_spin() const noexcept { return std::chrono::microseconds(o_.wait_spin_us); }
    std::chrono::microseconds poll_interval() const noexcept { return std::chrono::microseconds(o_.poll_interval_us); }

    /// The C struct.
    const DistWorkerOptions &raw() const noexcept { return o_; }
    DistWorkerOptions &raw() noexcept { return o_; }

private:
    template <class Rep>
    static std::uint32_t u32(Rep count) noexcept {
        if (count <= 0) return 0;
        if (static_cast<std::uint64_t>(count) >= std::numeric_limits<std::uint32_t>::max())
            return std::numeric_limits<std::uint32_t>::max();
        return static_cast<std::uint32_t>(count);
    }
    DistWorkerOptions o_;
};

/// A call config with the library's defaults (dist_call_config_init).
inline DistCallConfig default_config() noexcept {
    DistCallConfig c;
    dist_call_config_init(&c);
    return c;
}

/// Bytes of one element of `dtype` (0 for a value that is not one).
inline constexpr std::size_t dtype_size(DType dtype) noexcept {
    switch (dtype) {
        case DType::Int8:
        case DType::UInt8: return 1;
        case DType::Float16:
        case DType::BFloat16:
        case DType::Int16: return 2;
        case DType::Float32:
        case DType::Int32: return 4;
        case DType::Int64:
        case DType::UInt64: return 8;
    }
    return 0;
}

/// A tensor descriptor without memory (data 0: as an OUTPUT, the engine
/// allocates it from the heap ring). More than DIST_TENSOR_MAX_DIMS
/// dimensions are kept as ndims, so the library refuses them at dispatch.
inline DistTensor tensor(Span<const std::uint32_t> shape, DType dtype) noexcept {
    DistTensor t{};
    const std::size_t n = std::min<std::size_t>(shape.size(), DIST_TENSOR_MAX_DIMS);
    for (std::size_t i = 0; i < n; i++) t.shapes[i] = shape[i];
    t.ndims = static_cast<std::uint32_t>(std::min<std::size_t>(shape.size(), UINT32_MAX));
    t.dtype = static_cast<DistDataType>(dtype);
    return t;
}
/// A tensor descriptor of memory at `data` (also its dependency key).
inline DistTensor tensor(const void *data, Span<const std::uint32_t> shape, DType dtype) noexcept {
    DistTensor t = tensor(shape, dtype);
    t.data = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(data));
    return t;
}
/// The tensor's memory as T* (heap ring addresses are the same in every process).
template <class T>
T *data(const DistTensor &t) noexcept {
    return reinterpret_cast<T *>(static_cast<std::uintptr_t>(t.data));
}
/// Number of elements (1 for a 0-d tensor).
inline std::uint64_t element_count(const DistTensor &t) noexcept {
    std::uint64_t n = 1;
    for (std::uint32_t i = 0; i < t.ndims && i < DIST_TENSOR_MAX_DIMS; i++) n *= t.shapes[i];
    return n;
}

// ---------------------------------------------------------------------------
// What a callable receives
// ---------------------------------------------------------------------------

/// One task as a callable sees it: callable id (or handle), tensors,
/// scalars and config, valid for the duration of the call.
class Call {
public:
    Call(std::uint64_t callable, const DistTaskView &view, const DistCallConfig &config) noexcept
        : callable_(callable), view_(view), config_(config) {}

    /// SUB: the callable id; NEXT_LEVEL: the opaque handle.
    std::uint64_t callable() const noexcept { return callable_; }
    Span<const DistTensor> tensors() const noexcept {
        return Span<const DistTensor>(view_.tensors, view_.tensor_count > 0 ? std::size_t(view_.tensor_count) : 0);
    }
    Span<const std::uint64_t> scalars() const noexcept {
        return Span<const std::uint64_t>(view_.scalars, view_.scalar_count > 0 ? std::size_t(view_.scalar_count) : 0);
    }
    /// Tensor i; throws std::out_of_range (a task failure naming it) past the end.
    const DistTensor &tensor(std::size_t i) const {
        if (i >= tensors().size()) out_of_range("tensor", i, tensors().size());
        return tensors()[i];
    }
    /// Scalar i; throws std::out_of_range past the end.
    std::uint64_t scalar(std::size_t i) const {
        if (i >= scalars().size()) out_of_range("scalar", i, scalars().size());
        return scalars()[i];
    }
    const DistCallConfig &config() const noexcept { return config_; }
    /// The C view.
    const DistTaskView &view() const noexcept { return view_; }

private:
    [[noreturn]] static void out_of_range(const char *what, std::size_t i, std::size_t n) {
        throw std::out_of_range(std::string("dist::Call::") + what + "(" + std::to_string(i) + "): the task has " +
                                std::to_string(n) + " " + what + (n == 1 ? "" : "s"));
    }
    std::uint64_t callable_;
    DistTaskView view_;
    DistCallConfig config_;
};

// ---------------------------------------------------------------------------
// The task builder
// ---------------------------------------------------------------------------

/// A task and the arrays it points to, owned: tensors with their tags,
/// scalars, config (dist_call_config_init's defaults) and group size.
///
/// A task has one set of args per group member: input() / output() /
/// scalar() ... add to the current member, next_member() starts the next.
/// group(n) runs the task on n workers at once; when only one member's args
/// were given, every member gets them. Without group(), the group size is
/// the number of members. A group(n) that disagrees with more than one
/// member is refused at dispatch (DIST_ERR_INVALID_ARGUMENT).
class Task {
public:
    Task(WorkerType type, std::uint64_t callable) : members_(1), args_(1) {
        task_.worker_type = static_cast<DistWorkerType>(type);
        task_.callable = callable;
        dist_call_config_init(&task_.config);
        relink();
    }
    Task(const Task &o) : task_(o.task_), group_(o.group_), members_(o.members_), args_(o.args_) { relink(); }
    /// A moved-from Task is an empty task of the same type and callable.
    Task(Task &&o) noexcept
        : task_(o.task_), group_(o.group_), members_(std::move(o.members_)), args_(std::move(o.args_)) {
        relink();
        o.reset();
    }
    Task &operator=(const Task &o) {
        if (this != &o) {
            Task copy(o);
            *this = std::move(copy);
        }
        return *this;
    }
    Task &operator=(Task &&o) noexcept {
        if (this != &o) {
            task_ = o.task_;
            group_ = o.group_;
            members_ = std::move(o.members_);
            args_ = std::move(o.args_);
            relink();
            o.reset();
        }
        return *this;
    }
    ~Task() = default;

    /// A tensor of the current member with its tag.
    Task &tensor(const DistTensor &t, Arg tag) {
        Member &m = current();
        m.tensors.push_back(t);
        try {
            m.tags.push_back(static_cast<DistTensorArgType>(tag));
        } catch (...) {
            m.tensors.pop_back();
            throw;
        }
        relink();
        return *this;
    }
    Task &input(const DistTensor &t) { return tensor(t, Arg::Input); }
    Task &output(const DistTensor &t) { return tensor(t, Arg::Output); }
    Task &inout(const DistTensor &t) { return tensor(t, Arg::InOut); }
    Task &output_existing(const DistTensor &t) { return tensor(t, Arg::OutputExisting); }
    Task &no_dep(const DistTensor &t) { return tensor(t, Arg::NoDep); }

    /// A 64-bit scalar of the current member: an integer or enum value...
    template <class T, std::enable_if_t<std::is_integral_v<T> || std::is_enum_v<T>, int> = 0>
    Task &scalar(T value) {
        return push_scalar(static_cast<std::uint64_t>(value));
    }
    /// ... or an address (floating-point values go through scalar_bits).
    template <class T>
    Task &scalar(T *pointer) {
        return push_scalar(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(pointer)));
    }
    /// The bytes of a trivially copyable value of at most 8 bytes (a float,
    /// a double, a small struct) in the low bytes of a scalar.
    template <class T>
    Task &scalar_bits(const T &value) {
        static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(std::uint64_t),
                      "dist::Task::scalar_bits takes a trivially copyable value of at most 8 bytes");
        std::uint64_t bits = 0;
        std::memcpy(&bits, &value, sizeof(T));
        return push_scalar(bits);
    }
    /// Several scalars at once (for instance an outer call's scalars()).
    Task &scalars(Span<const std::uint64_t> values) {
        std::vector<std::uint64_t> &s = current().scalars;
        s.insert(s.end(), values.begin(), values.end());
        relink();
        return *this;
    }

    /// The whole launch configuration.
    Task &config(const DistCallConfig &config) noexcept { task_.config = config; return *this; }
    Task &block_dim(std::int32_t n) noexcept { task_.config.block_dim = n; return *this; }
    Task &aicpu_thread_num(std::int32_t n) noexcept { task_.config.aicpu_thread_num = n; return *this; }
    Task &profiling(bool on = true) noexcept { task_.config.enable_profiling = on; return *this; }
    Task &dump_tensor(bool on = true) noexcept { task_.config.enable_dump_tensor = on; return *this; }

    /// Runs the task on `n` workers at once (0 or 1: one task on one worker).
    Task &group(std::uint32_t n) {
        args_.resize(arg_count(n, members_.size()));
        group_ = n;
        relink();
        return *this;
    }
    /// Starts the args of the next group member.
    Task &next_member() {
        (void)current();
        members_.emplace_back();
        try {
            args_.resize(arg_count(group_, members_.size()));
        } catch (...) {
            members_.pop_back();
            throw;
        }
        relink();
        return *this;
    }

    WorkerType type() const noexcept { return static_cast<WorkerType>(task_.worker_type); }
    std::uint64_t callable() const noexcept { return task_.callable; }
    const DistCallConfig &config() const noexcept { return task_.config; }
    /// The group size sent (>= 1).
    std::uint32_t group_size() const noexcept { return task_.group_size; }
    /// Number of members whose args were given.
    std::size_t members() const noexcept { return members_.size(); }

    /// DIST_OK, or why the C++ layer refuses to dispatch it (the message
    /// starts with `operation`).
    Status validate(const char *operation = "dist_worker_dispatch") const {
        const std::size_t m = members_.size();
        if (m > std::numeric_limits<std::uint32_t>::max() || (m > 1 && group_ >= 1 && group_ != m))
            return Status(DIST_ERR_INVALID_ARGUMENT,
                          std::string(operation) + ": the dist::Task has group(" + std::to_string(group_) +
                              ") but args for " + std::to_string(m) + " members (give one set, or one per member)",
                          operation);
        return Status();
    }

    /// The C task, pointing into this object: valid while it lives unchanged.
    const DistTask &c_task() const noexcept { return task_; }

private:
    struct Member {
        std::vector<DistTensor> tensors;
        std::vector<DistTensorArgType> tags;
        std::vector<std::uint64_t> scalars;
    };
    static std::size_t arg_count(std::uint32_t group, std::size_t members) noexcept {
        return members > 1 ? members : std::max<std::size_t>(group, 1);
    }
    Task &push_scalar(std::uint64_t v) {
        current().scalars.push_back(v);
        relink();
        return *this;
    }
    // The member args are added to (a moved-from Task gets its first again).
    Member &current() {
        if (members_.empty()) {
            members_.emplace_back();
            args_.resize(arg_count(group_, 1));
        }
        return members_.back();
    }
    void reset() noexcept {
        group_ = 0;
        members_.clear();
        args_.clear();
        relink();
    }
    // Points every args entry at its member's arrays (no allocation).
    void relink() noexcept {
        const bool shared = members_.size() == 1;
        for (std::size_t i = 0; i < args_.size(); i++) {
            const Member &m = members_[shared ? 0 : i];
            DistTaskArgs &a = args_[i];
            a.tensors = m.tensors.empty() ? nullptr : m.tensors.data();
            a.tags = m.tags.empty() ? nullptr : m.tags.data();
            a.tensor_count = static_cast<std::uint32_t>(m.tensors.size());
            a.scalars = m.scalars.empty() ? nullptr : m.scalars.data();
            a.scalar_count = static_cast<std::uint32_t>(m.scalars.size());
        }
        task_.args = args_.empty() ? nullptr : args_.data();
        task_.group_size =
            members_.size() > 1 ? static_cast<std::uint32_t>(members_.size()) : std::max<std::uint32_t>(group_, 1);
    }

    DistTask task_{};
    std::uint32_t group_ = 0;  // as requested; 0 = the number of members
    std::vector<Member> members_;
    std::vector<DistTaskArgs> args_;
};

// ---------------------------------------------------------------------------
// Internals: callable storage and the C trampolines
// ---------------------------------------------------------------------------

class Worker;
class WorkerRef;
class Registrar;

namespace detail {

// Anything a Worker keeps alive until its pool is gone.
struct Holder {
    Holder() = default;
    Holder(const Holder &) = delete;
    Holder &operator=(const Holder &) = delete;
    virtual ~Holder() = default;
    // The worker the callable was registered on (set at registration).
    DistWorker *owner = nullptr;
};

// The worker whose callable this thread is running (nullptr outside one):
// Worker::shutdown() from inside one of its own callables is refused before
// it closes anything.
inline thread_local DistWorker *running_on = nullptr;

// Marks this thread as inside a callable of `owner` for its lifetime.
class OnPool {
public:
    explicit OnPool(DistWorker *owner) noexcept : previous_(std::exchange(running_on, owner)) {}
    OnPool(const OnPool &) = delete;
    OnPool &operator=(const OnPool &) = delete;
    ~OnPool() { running_on = previous_; }

private:
    DistWorker *previous_;
};

// The callables of one Worker (or one spawned level): stable addresses,
// freed all at once with the Keeper.
class Keeper final : public Holder {
public:
    Holder *keep(std::unique_ptr<Holder> h) {
        std::lock_guard<std::mutex> lock(mutex_);
        items_.push_back(std::move(h));
        return items_.back().get();
    }
    // Removes one whose registration failed (destroyed outside the lock).
    void drop(Holder *h) noexcept {
        std::unique_ptr<Holder> victim;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto it = std::find_if(items_.begin(), items_.end(),
                                   [h](const std::unique_ptr<Holder> &p) { return p.get() == h; });
            if (it == items_.end()) return;
            victim = std::move(*it);
            items_.erase(it);
        }
    }

private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<Holder>> items_;
};

template <class R>
inline constexpr bool is_code_v = std::is_void_v<R> || (std::is_integral_v<R> && !std::is_same_v<R, bool>);

template <class F, class... A>
constexpr bool returns_code() {
    if constexpr (std::is_invocable_v<F &, A...>)
        return is_code_v<std::invoke_result_t<F &, A...>>;
    else
        return false;
}

// The error code of a callable's return: void is success; a non-zero value
// that does not survive the cast to int32 must not turn into success.
template <class F, class... A>
std::int32_t code_of(F &f, A &&...a) {
    if constexpr (std::is_void_v<std::invoke_result_t<F &, A...>>) {
        std::invoke(f, std::forward<A>(a)...);
        return 0;
    } else {
        const auto r = std::invoke(f, std::forward<A>(a)...);
        const auto code = static_cast<std::int32_t>(r);
        return r == 0 ? 0 : code != 0 ? code : exception_code;
    }
}

// Runs `body` with no exception escaping: one that does becomes a code and
// the callable's message.
template <class Body>
std::int32_t guarded(Body &&body) noexcept {
    try {
        return body();
    } catch (const TaskFailure &e) {
        set_task_message(e.what());
        return e.code();
    } catch (const std::exception &e) {
        set_task_message(e.what());
        return exception_code;
    } catch (...) {
        set_task_message("unknown C++ exception (not derived from std::exception)");
        return exception_code;
    }
}

inline Call make_call(std::uint64_t callable, const DistTaskView *args, const DistCallConfig *config) noexcept {
    return Call(callable, args ? *args : DistTaskView{}, config ? *config : default_config());
}

template <class F>
struct TaskFn final : Holder {
    template <class G>
    explicit TaskFn(G &&g) : fn(std::forward<G>(g)) {}
    static std::int32_t run(void *user, std::uint64_t callable, const DistTaskView *args,
                            const DistCallConfig *config) noexcept {
        auto *self = static_cast<TaskFn *>(user);
        const OnPool on(self->owner);
        return guarded([&] {
            const Call call = make_call(callable, args, config);
            return code_of(self->fn, call);
        });
    }
    F fn;
};

template <class I, class F>
struct InitTaskFn final : Holder {
    template <class J, class G>
    InitTaskFn(J &&j, G &&g) : init(std::forward<J>(j)), fn(std::forward<G>(g)) {}
    static std::int32_t run_init(void *user) noexcept {
        auto *self = static_cast<InitTaskFn *>(user);
        const OnPool on(self->owner);
        return guarded([&] { return code_of(self->init); });
    }
    static std::int32_t run(void *user, std::uint64_t callable, const DistTaskView *args,
                            const DistCallConfig *config) noexcept {
        auto *self = static_cast<InitTaskFn *>(user);
        const OnPool on(self->owner);
        return guarded([&] {
            const Call call = make_call(callable, args, config);
            return code_of(self->fn, call);
        });
    }
    I init;
    F fn;
};

struct Access;

// ---------------------------------------------------------------------------
// The control block a Worker shares with its Futures and Scopes
// ---------------------------------------------------------------------------

// Who makes a call, for the message of a refused one.
enum class Who { worker, future, scope };

inline constexpr const char *empty_worker = "this dist::Worker is empty (moved from, or shut down)";

// Shared by a Worker and every Future and Scope it made; outlives the
// DistWorker. `state_` counts the calls in progress (its low bits), with a
// bit set once a shutdown began (no call may start from then on) and one
// once the DistWorker is gone. Lock-free, so that a forked child never
// inherits it locked.
class Life {
public:
    enum class Close { started, busy, gone };
    enum class Ended { now, deferred, refused, unknown };

    Life() noexcept = default;
    Life(const Life &) = delete;
    Life &operator=(const Life &) = delete;

    DistWorker *worker() const noexcept { return worker_; }
    // Once, right after dist_worker_create, before the block is shared.
    void bind(DistWorker *w) noexcept { worker_ = w; }

    // Counts a call in; false (nothing counted) once a shutdown began.
    bool enter() noexcept {
        if (state_.fetch_add(1, std::memory_order_acq_rel) & kClosing) {
            state_.fetch_sub(1, std::memory_order_acq_rel);
            return false;
        }
        return true;
    }
    void leave() noexcept { state_.fetch_sub(1, std::memory_order_acq_rel); }
    bool gone() const noexcept { return (state_.load(std::memory_order_acquire) & kGone) != 0; }

    // Begins a shutdown: refuses new calls, then waits for those in progress
    // (each a library call, or one slice of a wait). `busy` when another
    // thread began one, `gone` when one has finished.
    Close close_begin() noexcept {
        const std::uint64_t was = state_.fetch_or(kClosing, std::memory_order_acq_rel);
        if (was & kGone) return Close::gone;
        if (was & kClosing) return Close::busy;
        for (unsigned looks = 0; (state_.load(std::memory_order_acquire) & kCount) != 0; looks++) {
            if (looks < 64)
                std::this_thread::yield();
            else
                std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        return Close::started;
    }
    // The shutdown was refused and freed nothing: calls may start again.
    void reopen() noexcept { state_.fetch_and(~kClosing, std::memory_order_acq_rel); }
    // The DistWorker is freed, or no longer this block's to use.
    void mark_gone() noexcept { state_.fetch_or(kGone, std::memory_order_acq_rel); }

    // The open Scopes of the worker, outermost first (callers have a call
    // counted). Opens a scope; `serial` (never 0) names it.
    Status open_scope(std::uint64_t &serial) {
        constexpr const char *op = "dist_worker_scope_begin";
        std::lock_guard<std::mutex> lock(scope_mutex_);
        if (depth_ == kMaxDepth)
            return Status(DIST_ERR_INVALID_ARGUMENT,
                          std::string(op) + ": " + std::to_string(kMaxDepth) +
                              " scopes of this dist::Worker are open already (DIST_MAX_SCOPE_DEPTH)",
                          op);
        const DistStatus s = dist_worker_scope_begin(worker_);
        if (s != DIST_OK) return Status::from(s, op);
        serial = ++serials_;
        marks_[depth_++] = Mark{serial, false};
        return Status();
    }
    // Ends scope `serial` when it is the innermost open one, then the
    // enclosing ones whose Scope was destroyed meanwhile (`status`: the
    // first scope_end's). Otherwise it is refused (`inner`: the number
    // still open inside it) or, with `defer`, left to end after them.
    Ended end_scope(std::uint64_t serial, bool defer, DistStatus &status, std::size_t &inner) noexcept {
        std::lock_guard<std::mutex> lock(scope_mutex_);
        std::size_t i = depth_;
        while (i > 0 && marks_[i - 1].serial != serial) i--;
        if (i == 0) return Ended::unknown;
        if (i != depth_) {
            inner = depth_ - i;
            if (!defer) return Ended::refused;
            marks_[i - 1].ended = true;
            return Ended::deferred;
        }
        depth_--;
        status = dist_worker_scope_end(worker_);
        while (status == DIST_OK && depth_ > 0 && marks_[depth_ - 1].ended) {
            depth_--;
            (void)dist_worker_scope_end(worker_);
        }
        return Ended::now;
    }

private:
    static constexpr std::uint64_t kGone = std::uint64_t(1) << 63;
    static constexpr std::uint64_t kClosing = std::uint64_t(1) << 62;
    static constexpr std::uint64_t kCount = kClosing - 1;
    static constexpr std::size_t kMaxDepth = DIST_MAX_SCOPE_DEPTH;
    struct Mark {
        std::uint64_t serial;
        bool ended;  // its Scope was destroyed while scopes inside it were open
    };

    DistWorker *worker_ = nullptr;
    std::atomic<std::uint64_t> state_{0};
    std::mutex scope_mutex_;
    Mark marks_[kMaxDepth] = {};
    std::size_t depth_ = 0;
    std::uint64_t serials_ = 0;
};

// How an object reaches its worker: through the control block (a Worker,
// its Futures and Scopes: `life` points at the object's shared_ptr, empty
// for an empty Worker), or directly (`life` nullptr: WorkerRef, Registrar
// and what they made; `raw` is the handle).
struct Link {
    const std::shared_ptr<Life> *life;
    DistWorker *raw;
    Who who;
};

// One call through a Link: counted in the control block while the Pin
// lives, or refused with the reason (!*this, refusal()).
class Pin {
public:
    Pin(const Link &link, const char *operation) : w_(link.raw) {
        if (!link.life) return;  // an unchecked view: the library checks the handle
        if (!*link.life) {
            refusal_ = Status(DIST_ERR_NULL_ARGUMENT, std::string(operation) + ": " + empty_worker, operation);
            return;
        }
        life_ = *link.life;
        w_ = life_->worker();
        if (life_->enter()) {
            counted_ = true;
            return;
        }
        const bool gone = life_->gone();
        std::string text = std::string(operation) + ": ";
        if (link.who == Who::worker) {
            text += gone ? empty_worker : "this dist::Worker is shutting down (shutdown() began on another thread)";
        } else {
            text += "the dist::Worker of this ";
            text += link.who == Who::future ? "dist::Future " : "dist::Scope ";
            text += gone ? "is gone (shut down, destroyed, or adopted by add_level)" : "is shutting down";
        }
        refusal_ = Status(DIST_ERR_SHUT_DOWN, std::move(text), operation);
    }
    Pin(const Pin &) = delete;
    Pin &operator=(const Pin &) = delete;
    ~Pin() {
        if (counted_) life_->leave();
    }

    explicit operator bool() const noexcept { return refusal_.ok(); }
    const Status &refusal() const noexcept { return refusal_; }
    DistWorker *get() const noexcept { return w_; }
    // The control block (empty for a view).
    const std::shared_ptr<Life> &life() const noexcept { return life_; }

private:
    std::shared_ptr<Life> life_;
    DistWorker *w_ = nullptr;
    bool counted_ = false;
    Status refusal_;
};

}  // namespace detail

// ---------------------------------------------------------------------------
// Scope and Future
// ---------------------------------------------------------------------------

/// An open scope of a worker (scope_begin); ends it (scope_end) when it is
/// destroyed, ignoring the status, or when end() is called, reporting it.
/// Scopes belong to the worker, not the thread: open and close them from
/// one submitting thread, innermost first.
///
/// The Scopes of a dist::Worker know their order. end() on one that is not
/// the innermost open Scope of its Worker changes nothing and returns
/// DIST_ERR_BAD_STATE ("scopes end innermost first"). Destroying such a
/// Scope (or assigning to it) ends no other scope: its own scope ends as
/// soon as every scope opened inside it has ended, so a std::vector of
/// Scopes may be destroyed front to back. Once its Worker is gone (shut
/// down, destroyed, adopted by add_level) or shutting down, end() returns
/// DIST_ERR_SHUT_DOWN and leaves the Scope ended, and the destructor does
/// nothing. Scopes of a WorkerRef or Registrar are unchecked: they end the
/// worker's innermost scope, as scope_end does in C. Do not mix raw
/// dist_worker_scope_begin / scope_end calls with a Worker's Scopes.
class [[nodiscard]] Scope {
public:
    /// An ended scope.
    Scope() noexcept = default;
    Scope(Scope &&o) noexcept
        : life_(std::move(o.life_)), w_(std::exchange(o.w_, nullptr)), serial_(std::exchange(o.serial_, 0)) {}
    Scope &operator=(Scope &&o) noexcept {
        if (this != &o) {
            finish();
            life_ = std::move(o.life_);
            w_ = std::exchange(o.w_, nullptr);
            serial_ = std::exchange(o.serial_, 0);
        }
        return *this;
    }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;
    ~Scope() { finish(); }

    /// Ends the scope now and reports the status (an ended scope: DIST_OK);
    /// DIST_ERR_BAD_STATE, changing nothing, while scopes opened inside it
    /// are open.
    Status end() {
        constexpr const char *op = "dist_worker_scope_end";
        if (!w_) return Status();
        if (!life_) return Status::from(dist_worker_scope_end(std::exchange(w_, nullptr)), op);
        DistStatus s = DIST_OK;
        {
            const detail::Pin pin(detail::Link{&life_, w_, detail::Who::scope}, op);
            if (!pin) {
                Status refused = pin.refusal();
                forget();
                return refused;
            }
            std::size_t inner = 0;
            if (life_->end_scope(serial_, false, s, inner) == detail::Life::Ended::refused)
                return Status(DIST_ERR_BAD_STATE,
                              std::string(op) + ": scopes end innermost first: " + std::to_string(inner) +
                                  " scope(s) opened inside this one are still open",
                              op);
        }
        forget();
        return Status::from(s, op);
    }
    /// Whether the scope is still open.
    bool active() const noexcept { return w_ != nullptr; }

private:
    friend struct detail::Access;
    explicit Scope(DistWorker *w) noexcept : w_(w) {}
    Scope(const std::shared_ptr<detail::Life> &life, std::uint64_t serial) noexcept
        : life_(life), w_(life->worker()), serial_(serial) {}
    void forget() noexcept {
        life_.reset();
        w_ = nullptr;
        serial_ = 0;
    }
    // The destructor's end: no status, no allocation.
    void finish() noexcept {
        if (!w_) return;
        if (!life_) {
            (void)dist_worker_scope_end(std::exchange(w_, nullptr));
            return;
        }
        if (life_->enter()) {
            DistStatus s = DIST_OK;
            std::size_t inner = 0;
            (void)life_->end_scope(serial_, true, s, inner);
            life_->leave();
        }
        forget();
    }

    std::shared_ptr<detail::Life> life_;  // empty for an unchecked scope
    DistWorker *w_ = nullptr;             // nullptr once ended
    std::uint64_t serial_ = 0;
};

/// The longest single library wait behind the waits of a Worker and its
/// Futures: they wait in slices this long, so that a shutdown on another
/// thread never waits longer than this for a waiter to step aside.
inline constexpr std::chrono::milliseconds wait_slice{10};

namespace detail {

// A timeout for the C API: rounded up to whole ms (so a positive wait
// never becomes "do not wait"), clamped to uint32 (negative = 0).
template <class Rep, class Period>
std::uint32_t timeout_ms(std::chrono::duration<Rep, Period> d) noexcept {
    const double ms = std::chrono::duration<double, std::milli>(d).count();
    if (!(ms > 0)) return 0;
    if (ms >= static_cast<double>(std::numeric_limits<std::uint32_t>::max()))
        return std::numeric_limits<std::uint32_t>::max();
    return static_cast<std::uint32_t>(std::ceil(ms));
}

// The outcome of one slice of an untimed wait, worded as dist_worker_wait's.
inline Status as_wait(DistStatus s) {
    constexpr std::string_view timed = "dist_worker_wait_timeout: ";
    constexpr const char *op = "dist_worker_wait";
    Status slice = Status::from(s, op);
    if (slice.ok() || slice.message().substr(0, timed.size()) != timed) return slice;
    return Status(s, std::string(op) + ": " + std::string(slice.message().substr(timed.size())), op);
}

// Waits for a task (without `total_ms`: until it finishes). Through a view
// one library call; through the control block slices of wait_slice (each a
// counted call of dist_worker_wait_timeout), reported as the one call.
inline Status wait_task(const Link &link, TaskId id, std::optional<std::uint32_t> total_ms) {
    if (!link.life) {
        if (!total_ms) return Status::from(dist_worker_wait(link.raw, id), "dist_worker_wait");
        return Status::from(dist_worker_wait_timeout(link.raw, id, *total_ms), "dist_worker_wait_timeout");
    }
    const char *const op = total_ms ? "dist_worker_wait_timeout" : "dist_worker_wait";
    using clock = std::chrono::steady_clock;
    const clock::time_point deadline = clock::now() + std::chrono::milliseconds(total_ms.value_or(0));
    const auto slice = static_cast<std::uint32_t>(wait_slice.count());
    for (;;) {
        const std::uint32_t ms = total_ms ? std::min(slice, timeout_ms(deadline - clock::now())) : slice;
        const Pin pin(link, op);
        if (!pin) return pin.refusal();
        const clock::time_point start = clock::now();
        const DistStatus s = dist_worker_wait_timeout(pin.get(), id, ms);
        const clock::time_point now = clock::now();
        // The library says "not finished" only once its `ms` have passed:
        // a TIMEOUT sooner is the task's own (it passed task_timeout_ms).
        const bool done = s != DIST_ERR_TIMEOUT || now - start < std::chrono::milliseconds(ms);
        if (total_ms && (done || now >= deadline)) return Status::from(s, op);
        if (!total_ms && done) return as_wait(s);
    }
}
// wait_for's throwing form: true when done, false on a timeout.
inline bool finished(const Status &s) {
    if (s.status() == DIST_ERR_TIMEOUT) return false;
    s.throw_if_error();
    return true;
}
inline Result<DistTensor> task_tensor(const Link &link, TaskId id, std::uint32_t member, std::uint32_t index) {
    constexpr const char *op = "dist_worker_task_tensor";
    const Pin pin(link, op);
    if (!pin) return pin.refusal();
    DistTensor t{};
    const DistStatus s = dist_worker_task_tensor(pin.get(), id, member, index, &t);
    if (s != DIST_OK) return Status::from(s, op);
    return t;
}

}  // namespace detail

/// A dispatched task: its id and its worker. Copyable; valid, like the id,
/// until the next drain or shutdown of the worker. One made by a
/// dist::Worker may outlive it: it then reports DIST_ERR_SHUT_DOWN (see
/// LIFETIME at the top), and a wait on it under way when another thread
/// shuts the Worker down returns so within dist::wait_slice.
class Future {
public:
    Future() noexcept = default;
    /// An unchecked Future of task `id` of `worker` (as a WorkerRef makes).
    Future(DistWorker *worker, TaskId id) noexcept : w_(worker), id_(id) {}

    TaskId id() const noexcept { return id_; }
    DistWorker *worker() const noexcept { return w_; }
    explicit operator bool() const noexcept { return id_ != 0; }

    /// Waits; throws dist::Error with the task's status and message if it failed.
    void wait() const { try_wait().throw_if_error(); }
    Status try_wait() const { return detail::wait_task(link(), id_, std::nullopt); }
    /// Waits up to `timeout` (rounded up to ms): true when the task finished
    /// well, false when it had not finished; throws if it failed.
    template <class Rep, class Period>
    [[nodiscard]] bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
        return detail::finished(try_wait_for(timeout));
    }
    /// As wait_for; DIST_ERR_TIMEOUT when the task had not finished.
    template <class Rep, class Period>
    Status try_wait_for(std::chrono::duration<Rep, Period> timeout) const {
        return detail::wait_task(link(), id_, detail::timeout_ms(timeout));
    }
    template <class Clock, class Duration>
    [[nodiscard]] bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
        return wait_for(deadline - Clock::now());
    }
    template <class Clock, class Duration>
    Status try_wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
        return try_wait_for(deadline - Clock::now());
    }

    /// Tensor `index` of member 0 as dispatched (an OUTPUT with data 0: its heap address).
    DistTensor tensor(std::uint32_t index) const { return try_tensor(0, index).value(); }
    /// Tensor `index` of group member `member`.
    DistTensor tensor(std::uint32_t member, std::uint32_t index) const { return try_tensor(member, index).value(); }
    Result<DistTensor> try_tensor(std::uint32_t index) const { return try_tensor(0, index); }
    Result<DistTensor> try_tensor(std::uint32_t member, std::uint32_t index) const {
        return detail::task_tensor(link(), id_, member, index);
    }

private:
    friend struct detail::Access;
    Future(const std::shared_ptr<detail::Life> &life, DistWorker *worker, TaskId id) noexcept
        : life_(life), w_(worker), id_(id) {}
    detail::Link link() const noexcept { return detail::Link{life_ ? &life_ : nullptr, w_, detail::Who::future}; }

    std::shared_ptr<detail::Life> life_;  // empty for an unchecked Future
    DistWorker *w_ = nullptr;
    TaskId id_ = 0;
};

namespace detail {

struct Access {
    static Scope scope(DistWorker *w) noexcept { return Scope(w); }
    static Scope scope(const std::shared_ptr<Life> &life, std::uint64_t serial) noexcept { return Scope(life, serial); }
    static Future future(const Pin &pin, TaskId id) noexcept {
        return pin.life() ? Future(pin.life(), pin.get(), id) : Future(pin.get(), id);
    }
    static Registrar registrar(DistWorker *w, Keeper *k) noexcept;
    static const std::shared_ptr<Life> &life(const Worker &w) noexcept;
    // add_level adopted `w`: takes its callables and leaves it empty.
    static void release(Worker &w, std::unique_ptr<Keeper> &keeper) noexcept;
};

// ---------------------------------------------------------------------------
// The submit API, shared by Worker, WorkerRef and Registrar
// ---------------------------------------------------------------------------

// Const like a pointer: a const view (a WorkerRef captured by a lambda)
// submits as well; the worker is not part of the object's value.
template <class Self>
class Submit {
public:
    /// Starts the pool (also done by the first dispatch); again is a no-op.
    void start() const { try_start().throw_if_error(); }
    Status try_start() const {
        constexpr const char *op = "dist_worker_start";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        return Status::from(dist_worker_start(pin.get()), op);
    }

    /// Submits a task (its arrays are copied before this returns).
    Future dispatch(const Task &task) const { return try_dispatch(task).value(); }
    Result<Future> try_dispatch(const Task &task) const {
        constexpr const char *op = "dist_worker_dispatch";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        Status invalid = task.validate(op);
        if (!invalid.ok()) return invalid;
        TaskId id = 0;
        const DistStatus s = dist_worker_dispatch(pin.get(), &task.c_task(), &id);
        if (s != DIST_OK) return Status::from(s, op);
        return Access::future(pin, id);
    }
    /// Submits a task whose member i runs on worker indices[i] of its type
    /// (one index per member: group_size() of them).
    Future dispatch_on(const Task &task, Span<const std::uint32_t> indices) const {
        return try_dispatch_on(task, indices).value();
    }
    Result<Future> try_dispatch_on(const Task &task, Span<const std::uint32_t> indices) const {
        constexpr const char *op = "dist_worker_dispatch_on";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        Status invalid = task.validate(op);
        if (!invalid.ok()) return invalid;
        if (indices.size() != task.group_size())
            return Status(DIST_ERR_INVALID_ARGUMENT,
                          std::string(op) + ": " + std::to_string(indices.size()) + " worker indices for a task of " +
                              std::to_string(task.group_size()) + " member(s)",
                          op);
        TaskId id = 0;
        const DistStatus s = dist_worker_dispatch_on(pin.get(), &task.c_task(), indices.data(), &id);
        if (s != DIST_OK) return Status::from(s, op);
        return Access::future(pin, id);
    }

    /// Waits for a task; throws dist::Error with its status and message if it failed.
    void wait(TaskId id) const { try_wait(id).throw_if_error(); }
    Status try_wait(TaskId id) const { return wait_task(target(), id, std::nullopt); }
    /// Waits up to `timeout`: true when finished well, false when not yet; throws if it failed.
    template <class Rep, class Period>
    [[nodiscard]] bool wait_for(TaskId id, std::chrono::duration<Rep, Period> timeout) const {
        return detail::finished(try_wait_for(id, timeout));
    }
    template <class Rep, class Period>
    Status try_wait_for(TaskId id, std::chrono::duration<Rep, Period> timeout) const {
        return wait_task(target(), id, detail::timeout_ms(timeout));
    }

    /// Waits for every submitted task; throws the first failure since the
    /// last drain. (A drain of a Worker is one library call: a shutdown on
    /// another thread waits for it.)
    void drain() const { try_drain().throw_if_error(); }
    Status try_drain() const {
        constexpr const char *op = "dist_worker_drain";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        return Status::from(dist_worker_drain(pin.get()), op);
    }

    /// Opens a scope, closed when the returned Scope ends.
    Scope scope() const { return try_scope().value(); }
    Result<Scope> try_scope() const {
        constexpr const char *op = "dist_worker_scope_begin";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        if (!pin.life()) {
            const DistStatus s = dist_worker_scope_begin(pin.get());
            if (s != DIST_OK) return Status::from(s, op);
            return Access::scope(pin.get());
        }
        std::uint64_t serial = 0;
        Status opened = pin.life()->open_scope(serial);
        if (!opened.ok()) return opened;
        return Access::scope(pin.life(), serial);
    }

    /// Heap ring memory of `shape` elements of `dtype`, owned by the current scope.
    DistTensor alloc(Span<const std::uint32_t> shape, DType dtype) const { return try_alloc(shape, dtype).value(); }
    Result<DistTensor> try_alloc(Span<const std::uint32_t> shape, DType dtype) const {
        constexpr const char *op = "dist_worker_alloc";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        if (shape.size() > std::numeric_limits<std::uint32_t>::max())
            return Status(DIST_ERR_INVALID_ARGUMENT, std::string(op) + ": too many dimensions", op);
        DistTensor t{};
        const DistStatus s = dist_worker_alloc(pin.get(), shape.data(), static_cast<std::uint32_t>(shape.size()),
                                               static_cast<DistDataType>(dtype), &t);
        if (s != DIST_OK) return Status::from(s, op);
        return t;
    }

    /// Tensor `index` of group member `member` of a task as dispatched.
    DistTensor task_tensor(TaskId id, std::uint32_t member, std::uint32_t index) const {
        return try_task_tensor(id, member, index).value();
    }
    Result<DistTensor> try_task_tensor(TaskId id, std::uint32_t member, std::uint32_t index) const {
        return detail::task_tensor(target(), id, member, index);
    }

protected:
    Submit() = default;
    Submit(const Submit &) = default;
    Submit &operator=(const Submit &) = default;
    ~Submit() = default;

private:
    Link target() const noexcept { return static_cast<const Self *>(this)->link(); }
};

template <class Self>
class Register;

}  // namespace detail

// ---------------------------------------------------------------------------
// WorkerRef
// ---------------------------------------------------------------------------

/// A non-owning view of a worker with the submit API: what an orchestration
/// function gets for its inner level; a Worker converts to one (capture it
/// in a THREAD callable to submit to the worker from inside). Unchecked, as
/// the C handle: it must not be used once its worker was shut down, nor
/// must the Futures and Scopes it makes.
class WorkerRef : public detail::Submit<WorkerRef> {
public:
    WorkerRef() noexcept = default;
    /// Views a DistWorker owned elsewhere (for instance by C code).
    explicit WorkerRef(DistWorker *worker) noexcept : w_(worker) {}
    DistWorker *get() const noexcept { return w_; }
    explicit operator bool() const noexcept { return w_ != nullptr; }

private:
    friend class detail::Submit<WorkerRef>;
    detail::Link link() const noexcept { return detail::Link{nullptr, w_, detail::Who::worker}; }
    DistWorker *w_ = nullptr;
};

namespace detail {

template <class F>
struct OrchFn final : Holder {
    template <class G>
    explicit OrchFn(G &&g) : fn(std::forward<G>(g)) {}
    static std::int32_t run(void *user, DistWorker *inner, std::uint64_t callable, const DistTaskView *args,
                            const DistCallConfig *config) noexcept {
        auto *self = static_cast<OrchFn *>(user);
        const OnPool on(self->owner);
        return guarded([&] {
            const Call call = make_call(callable, args, config);
            return code_of(self->fn, WorkerRef(inner), call);
        });
    }
    F fn;
    // The callables of the adopted inner Worker (add_level).
    std::unique_ptr<Keeper> adopted;
};

template <class S, class O>
struct LevelFn final : Holder {
    template <class T, class P>
    LevelFn(T &&t, P &&p) : setup(std::forward<T>(t)), orch(std::forward<P>(p)) {}
    static std::int32_t run_setup(void *user, DistWorker *inner) noexcept;
    static std::int32_t run(void *user, DistWorker *inner, std::uint64_t callable, const DistTaskView *args,
                            const DistCallConfig *config) noexcept {
        auto *self = static_cast<LevelFn *>(user);
        const OnPool on(self->owner);
        return guarded([&] {
            const Call call = make_call(callable, args, config);
            return code_of(self->orch, WorkerRef(inner), call);
        });
    }
    S setup;
    O orch;
    // In the level's process: the callables its setup registered.
    Keeper inner;
};

// ---------------------------------------------------------------------------
// The registration API, shared by Worker and Registrar
// ---------------------------------------------------------------------------

template <class Self>
class Register {
    template <class F>
    static constexpr bool task_fn = returns_code<std::decay_t<F>, const Call &>();
    template <class F>
    static constexpr bool orch_fn = returns_code<std::decay_t<F>, WorkerRef, const Call &>();
    template <class F>
    static constexpr bool setup_fn = returns_code<std::decay_t<F>, Registrar &>();
    template <class F>
    static constexpr bool init_fn = returns_code<std::decay_t<F>>();

public:
    /// A THREAD worker of `type` running `fn(const Call&)` on a pool thread.
    /// Before start only.
    template <class F>
    void add_thread(WorkerType type, F &&fn) {
        try_add_thread(type, std::forward<F>(fn)).throw_if_error();
    }
    template <class F>
    Status try_add_thread(WorkerType type, F &&fn) {
        static_assert(task_fn<F>, "dist: a task callable is invocable as fn(const dist::Call &) and returns void "
                                  "or an integral error code (0 = success)");
        using H = TaskFn<std::decay_t<F>>;
        return enroll<H>("dist_worker_add_thread", [type](DistWorker *dw, H *h) {
            return dist_worker_add_thread(dw, static_cast<DistWorkerType>(type), &H::run, h);
        }, std::forward<F>(fn));
    }

    /// Forks a child serving `fn(const Call&)` as a PROCESS worker of `type`;
    /// returns its pid. Before start only (flush stdio first: the child
    /// inherits unwritten buffers).
    template <class F>
    std::int32_t spawn(WorkerType type, F &&fn) {
        return try_spawn(type, std::forward<F>(fn)).value();
    }
    template <class F>
    Result<std::int32_t> try_spawn(WorkerType type, F &&fn) {
        static_assert(task_fn<F>, "dist: a task callable is invocable as fn(const dist::Call &) and returns void "
                                  "or an integral error code (0 = success)");
        using H = TaskFn<std::decay_t<F>>;
        std::int32_t pid = 0;
        Status s = enroll<H>("dist_worker_spawn", [type, &pid](DistWorker *dw, H *h) {
            return dist_worker_spawn(dw, static_cast<DistWorkerType>(type), &H::run, h, &pid);
        }, std::forward<F>(fn));
        if (!s.ok()) return s;
        return pid;
    }

    /// As spawn, running `init()` in the child first: a non-zero code (or an
    /// exception) there makes start fail with DIST_ERR_CHILD_DIED.
    template <class I, class F>
    std::int32_t spawn_with_init(WorkerType type, I &&init, F &&fn) {
        return try_spawn_with_init(type, std::forward<I>(init), std::forward<F>(fn)).value();
    }
    template <class I, class F>
    Result<std::int32_t> try_spawn_with_init(WorkerType type, I &&init, F &&fn) {
        static_assert(init_fn<I>, "dist: an init callable is invocable as init() and returns void or an integral "
                                  "error code (0 = ready)");
        static_assert(task_fn<F>, "dist: a task callable is invocable as fn(const dist::Call &) and returns void "
                                  "or an integral error code (0 = success)");
        using H = InitTaskFn<std::decay_t<I>, std::decay_t<F>>;
        std::int32_t pid = 0;
        Status s = enroll<H>("dist_worker_spawn_with_init", [type, &pid](DistWorker *dw, H *h) {
            return dist_worker_spawn_with_init(dw, static_cast<DistWorkerType>(type), &H::run_init, &H::run, h, &pid);
        }, std::forward<I>(init), std::forward<F>(fn));
        if (!s.ok()) return s;
        return pid;
    }

    /// THREAD mode: `inner` (created, not started) becomes a NEXT_LEVEL
    /// worker of this one; each outer task sent to it runs
    /// `orch(WorkerRef inner, const Call&)` on a pool thread, after which
    /// the library drains `inner`. On success this worker owns `inner` and
    /// its callables (`inner` is left empty: it shuts nothing down); on
    /// failure `inner` is untouched and still owns its worker.
    template <class O>
    void add_level(Worker &&inner, O &&orch) {
        try_add_level(std::move(inner), std::forward<O>(orch)).throw_if_error();
    }
    template <class O>
    Status try_add_level(Worker &&inner, O &&orch);

    /// PROCESS mode: forks a child hosting its own level, created with
    /// `options` (without: the defaults, one level below this one);
    /// `setup(Registrar&)` registers its workers there, and each outer task
    /// runs `orch(WorkerRef inner, const Call&)` on it. Returns its pid.
    template <class S, class O>
    std::int32_t spawn_level(const Options &options, S &&setup, O &&orch) {
        return try_spawn_level(options, std::forward<S>(setup), std::forward<O>(orch)).value();
    }
    template <class S, class O>
    std::int32_t spawn_level(S &&setup, O &&orch) {
        return try_spawn_level(std::forward<S>(setup), std::forward<O>(orch)).value();
    }
    template <class S, class O>
    Result<std::int32_t> try_spawn_level(const Options &options, S &&setup, O &&orch) {
        return level(&options.raw(), std::forward<S>(setup), std::forward<O>(orch));
    }
    template <class S, class O>
    Result<std::int32_t> try_spawn_level(S &&setup, O &&orch) {
        return level(nullptr, std::forward<S>(setup), std::forward<O>(orch));
    }

    /// A PROCESS worker served by a caller-started child through `mailbox`
    /// (dist_worker_add_process).
    void add_process(WorkerType type, void *mailbox) { try_add_process(type, mailbox).throw_if_error(); }
    Status try_add_process(WorkerType type, void *mailbox) {
        constexpr const char *op = "dist_worker_add_process";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        return Status::from(dist_worker_add_process(pin.get(), static_cast<DistWorkerType>(type), mailbox), op);
    }
    /// Names the pid serving a mailbox of add_process (dist_worker_set_process_pid).
    void set_process_pid(void *mailbox, std::int32_t pid) { try_set_process_pid(mailbox, pid).throw_if_error(); }
    Status try_set_process_pid(void *mailbox, std::int32_t pid) {
        constexpr const char *op = "dist_worker_set_process_pid";
        const Pin pin(target(), op);
        if (!pin) return pin.refusal();
        return Status::from(dist_worker_set_process_pid(pin.get(), mailbox, pid), op);
    }

protected:
    Register() = default;
    Register(const Register &) = default;
    Register &operator=(const Register &) = default;
    ~Register() = default;

private:
    Link target() const noexcept { return static_cast<const Self *>(this)->link(); }
    Keeper *keeper() noexcept { return static_cast<Self *>(this)->keeper(); }

    // Keeps a new holder H(args...), then registers it with `c_call(w, h)`;
    // a refused registration drops it again.
    template <class H, class CCall, class... A>
    Status enroll(const char *operation, CCall &&c_call, A &&...args) {
        const Pin pin(target(), operation);
        if (!pin) return pin.refusal();
        Keeper *k = keeper();
        if (!pin.get() || !k)
            return Status(DIST_ERR_NULL_ARGUMENT,
                          std::string(operation) + ": this dist::Registrar is empty (it views an empty dist::Worker)",
                          operation);
        auto owned = std::make_unique<H>(std::forward<A>(args)...);
        owned->owner = pin.get();
        H *h = owned.get();
        k->keep(std::move(owned));
        const DistStatus s = c_call(pin.get(), h);
        if (s == DIST_OK) return Status();
        Status failed = Status::from(s, operation);
        k->drop(h);
        return failed;
    }

    template <class S, class O>
    Result<std::int32_t> level(const DistWorkerOptions *options, S &&setup, O &&orch) {
        static_assert(setup_fn<S>, "dist: a level setup callable is invocable as setup(dist::Registrar &) and "
                                   "returns void or an integral error code (0 = ready)");
        static_assert(orch_fn<O>, "dist: an orchestration callable is invocable as orch(dist::WorkerRef, const "
                                  "dist::Call &) and returns void or an integral error code (0 = success)");
        using H = LevelFn<std::decay_t<S>, std::decay_t<O>>;
        std::int32_t pid = 0;
        Status s = enroll<H>("dist_worker_spawn_level", [options, &pid](DistWorker *dw, H *h) {
            return dist_worker_spawn_level(dw, options, &H::run_setup, &H::run, h, &pid);
        }, std::forward<S>(setup), std::forward<O>(orch));
        if (!s.ok()) return s;
        return pid;
    }
};

}  // namespace detail

// ---------------------------------------------------------------------------
// Registrar
// ---------------------------------------------------------------------------

/// A non-owning view of a worker that can also register workers, keeping
/// their callables alive as long as the worker: what a spawned level's
/// setup function gets (`worker.registrar()` gives one of a Worker).
class Registrar : public detail::Submit<Registrar>, public detail::Register<Registrar> {
public:
    DistWorker *get() const noexcept { return w_; }
    explicit operator bool() const noexcept { return w_ != nullptr; }
    operator WorkerRef() const noexcept { return WorkerRef(w_); }
    WorkerRef ref() const noexcept { return WorkerRef(w_); }

private:
    friend struct detail::Access;
    friend class detail::Submit<Registrar>;
    friend class detail::Register<Registrar>;
    detail::Link link() const noexcept { return detail::Link{nullptr, w_, detail::Who::worker}; }
    Registrar(DistWorker *w, detail::Keeper *k) noexcept : w_(w), k_(k) {}
    detail::Keeper *keeper() noexcept { return k_; }
    DistWorker *w_ = nullptr;
    detail::Keeper *k_ = nullptr;
};

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

/// Owns one DistWorker and the callables registered on it; move-only. The
/// destructor shuts the worker down (ignoring the status); shutdown() does
/// it explicitly and reports it. Every operation of an empty Worker (moved
/// from, adopted by add_level, or shut down) is refused with "this
/// dist::Worker is empty (moved from, or shut down)": DIST_ERR_NULL_ARGUMENT
/// when moved from, DIST_ERR_SHUT_DOWN once shut down (see LIFETIME).
class Worker : public detail::Submit<Worker>, public detail::Register<Worker> {
public:
    /// A worker with the default options; throws dist::Error.
    Worker() : Worker(Options()) {}
    /// A worker with `options`; throws dist::Error.
    explicit Worker(const Options &options) : Worker(create(options).value()) {}
    /// The non-throwing form.
    static Result<Worker> create(const Options &options = Options()) {
        auto keeper = std::make_unique<detail::Keeper>();
        auto life = std::make_shared<detail::Life>();
        DistWorker *w = nullptr;
        const DistStatus s = dist_worker_create(&options.raw(), &w);
        if (s != DIST_OK) return Status::from(s, "dist_worker_create");
        life->bind(w);
        return Worker(std::move(life), std::move(keeper));
    }

    Worker(Worker &&o) noexcept : life_(std::move(o.life_)), keeper_(std::move(o.keeper_)) {}
    Worker &operator=(Worker &&o) noexcept {
        if (this != &o) {
            close();
            life_ = std::move(o.life_);
            keeper_ = std::move(o.keeper_);
        }
        return *this;
    }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;
    ~Worker() { close(); }

    /// Shuts the worker down now (dist_worker_shutdown) and reports the
    /// first failure not yet drained, or DIST_ERR_TIMEOUT. First it refuses
    /// new calls through this Worker and its Futures and Scopes and waits
    /// for those under way (see LIFETIME). The Worker is empty afterwards;
    /// an empty one returns DIST_OK. While another thread shuts it down it
    /// returns DIST_ERR_SHUT_DOWN ("already shutting down") and waits for
    /// nothing. Called from one of its own callables it is refused
    /// (DIST_ERR_BAD_STATE) and changes nothing (from a callable registered
    /// through the C API on get(), the library refuses it, and calls of
    /// other threads made meanwhile were refused with DIST_ERR_SHUT_DOWN).
    Status shutdown() {
        constexpr const char *op = "dist_worker_shutdown";
        if (!life_ || life_->gone()) return Status();
        const std::shared_ptr<detail::Life> keep = life_;
        detail::Life &life = *keep;
        if (detail::running_on == life.worker())
            return Status(DIST_ERR_BAD_STATE,
                          std::string(op) + ": called from a callable of this very worker: shutdown joins its "
                                            "pool threads; call it from a host thread",
                          op);
        switch (life.close_begin()) {
            case detail::Life::Close::gone: return Status();
            case detail::Life::Close::busy:
                return Status(DIST_ERR_SHUT_DOWN,
                              std::string(op) + ": this dist::Worker is already shutting down on another thread", op);
            case detail::Life::Close::started: break;
        }
        const DistStatus s = dist_worker_shutdown(life.worker());
        Status report = Status::from(s, op);
        // DIST_ERR_BAD_STATE is shutdown's refusal on a pool thread of this
        // very worker (a callable registered through the C API): it freed
        // nothing, so the Worker keeps everything.
        if (s == DIST_ERR_BAD_STATE) {
            life.reopen();
            return report;
        }
        std::unique_ptr<detail::Keeper> callables = forget(s);
        return report;  // `callables` go after the message was read
    }

    /// The handle; nullptr once moved from, adopted by add_level or shut down.
    DistWorker *get() const noexcept { return life_ && !life_->gone() ? life_->worker() : nullptr; }
    /// False once moved from, adopted by add_level or shut down.
    explicit operator bool() const noexcept { return get() != nullptr; }
    /// An unchecked view (see WorkerRef).
    operator WorkerRef() const noexcept { return WorkerRef(get()); }
    WorkerRef ref() const noexcept { return WorkerRef(get()); }
    /// A view with the registration API (callables stay owned by this
    /// Worker); unchecked, as a WorkerRef.
    Registrar registrar() noexcept { return detail::Access::registrar(get(), keeper_.get()); }

private:
    friend struct detail::Access;
    friend class detail::Submit<Worker>;
    friend class detail::Register<Worker>;
    Worker(std::shared_ptr<detail::Life> life, std::unique_ptr<detail::Keeper> keeper) noexcept
        : life_(std::move(life)), keeper_(std::move(keeper)) {}
    detail::Keeper *keeper() noexcept { return keeper_.get(); }
    detail::Link link() const noexcept { return detail::Link{&life_, nullptr, detail::Who::worker}; }

    // After dist_worker_shutdown returned `s` (not BAD_STATE): the handle is
    // gone; the callables are returned to be freed, or leaked when a pool
    // thread may still be inside one (DIST_ERR_TIMEOUT).
    std::unique_ptr<detail::Keeper> forget(DistStatus s) noexcept {
        life_->mark_gone();
        std::unique_ptr<detail::Keeper> k = std::move(keeper_);
        if (s == DIST_ERR_TIMEOUT) (void)k.release();
        return k;
    }
    void close() noexcept {
        if (!life_ || life_->gone()) return;
        detail::Life &life = *life_;
        if (detail::running_on == life.worker()) {
            // Destroyed from inside one of its own callables: the worker
            // keeps running, so it and its callables are left alive (and
            // its Futures and Scopes go on working).
            life_.reset();
            (void)keeper_.release();
            return;
        }
        // Another thread's shutdown under way either finishes (gone) or is
        // refused and reopens (one from a pool thread): wait to see which.
        for (detail::Life::Close c = life.close_begin(); c != detail::Life::Close::started; c = life.close_begin()) {
            if (c == detail::Life::Close::gone) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        const DistStatus s = dist_worker_shutdown(life.worker());
        if (s == DIST_ERR_BAD_STATE) {
            // From a pool thread after all (a callable registered through
            // the C API): as above.
            life.reopen();
            life_.reset();
            (void)keeper_.release();
            return;
        }
        forget(s);
    }

    std::shared_ptr<detail::Life> life_;  // shared with its Futures and Scopes
    std::unique_ptr<detail::Keeper> keeper_;
};

// ---------------------------------------------------------------------------
// Out-of-line definitions that need the complete types
// ---------------------------------------------------------------------------

namespace detail {

inline Registrar Access::registrar(DistWorker *w, Keeper *k) noexcept { return Registrar(w, k); }
inline const std::shared_ptr<Life> &Access::life(const Worker &w) noexcept { return w.life_; }
inline void Access::release(Worker &w, std::unique_ptr<Keeper> &keeper) noexcept {
    keeper = std::move(w.keeper_);
    w.life_.reset();
}

template <class S, class O>
std::int32_t LevelFn<S, O>::run_setup(void *user, DistWorker *inner) noexcept {
    auto *self = static_cast<LevelFn *>(user);
    const OnPool on(self->owner);
    return guarded([&] {
        Registrar r = Access::registrar(inner, &self->inner);
        return code_of(self->setup, r);
    });
}

template <class Self>
template <class O>
Status Register<Self>::try_add_level(Worker &&inner, O &&orch) {
    static_assert(orch_fn<O>, "dist: an orchestration callable is invocable as orch(dist::WorkerRef, const "
                              "dist::Call &) and returns void or an integral error code (0 = success)");
    constexpr const char *op = "dist_worker_add_level";
    using H = OrchFn<std::decay_t<O>>;
    const std::shared_ptr<Life> life = Access::life(inner);
    const std::string empty_inner = std::string(op) + ": the inner dist::Worker is empty (moved from, or shut down)";
    if (!life || life->gone()) return Status(life ? DIST_ERR_SHUT_DOWN : DIST_ERR_NULL_ARGUMENT, empty_inner, op);
    // The inner Worker's own calls (its Futures and Scopes) stop while it
    // is handed over, and for good once the outer one owns it; a level of
    // itself is the library's to refuse.
    const bool itself = life->worker() == static_cast<Self *>(this)->get();
    if (!itself) {
        switch (life->close_begin()) {
            case Life::Close::started: break;
            case Life::Close::gone: return Status(DIST_ERR_SHUT_DOWN, empty_inner, op);
            case Life::Close::busy:
                return Status(DIST_ERR_SHUT_DOWN,
                              std::string(op) + ": the inner dist::Worker is shutting down on another thread", op);
        }
    }
    H *holder = nullptr;
    Status s = enroll<H>(op, [&life, &holder](DistWorker *dw, H *h) {
        holder = h;
        return dist_worker_add_level(dw, life->worker(), &H::run, h);
    }, std::forward<O>(orch));
    // Registered: the outer worker owns the inner one now; its callables
    // live in the orchestration function's holder (no allocation here).
    if (s.ok()) {
        life->mark_gone();
        Access::release(inner, holder->adopted);
    } else if (!itself) {
        life->reopen();
    }
    return s;
}

}  // namespace detail

/// Child side: serves a caller-owned `mailbox` with `fn(const Call&)` until
/// SHUTDOWN (dist_child_serve), exceptions turned into codes as everywhere.
template <class F>
Status child_serve(void *mailbox, F &&fn) {
    static_assert(detail::returns_code<std::decay_t<F>, const Call &>(),
                  "dist: a task callable is invocable as fn(const dist::Call &) and returns void or an integral "
                  "error code (0 = success)");
    detail::TaskFn<std::decay_t<F>> holder(std::forward<F>(fn));
    return Status::from(dist_child_serve(mailbox, &decltype(holder)::run, &holder), "dist_child_serve");
}

}  // namespace dist

#endif  // DIST_WORKER_HPP
