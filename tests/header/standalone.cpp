// dist_worker.h compiles alone as C++11 (-Wall -Wextra -Werror).
#include "dist_worker.h"

// Uses the types and takes the address of a function, so every declaration
// the header makes is parsed and checked, and the C linkage is usable from C++.
size_t dist_worker_header_probe_cxx();

size_t dist_worker_header_probe_cxx()
{
    DistTaskFn fn = nullptr;
    DistStatus (*dispatch)(DistWorker *, const DistTask *, DistTaskId *) = &dist_worker_dispatch;
    static_cast<void>(fn);
    static_cast<void>(dispatch);
    return sizeof(DistTensor) + sizeof(DistTask) + sizeof(DistTaskArgs) +
           sizeof(DistTaskView) + sizeof(DistCallConfig) + sizeof(DistWorkerOptions);
}
