/* dist_worker.h compiles alone as strict C99 (-pedantic -Werror). */
#include "dist_worker.h"

/* Uses the types and takes the address of a function, so every declaration
   the header makes is parsed and checked, not just skipped. */
size_t dist_worker_header_probe_c(void);

size_t dist_worker_header_probe_c(void)
{
    DistTaskFn fn = 0;
    DistStatus (*dispatch)(DistWorker *, const DistTask *, DistTaskId *) = dist_worker_dispatch;
    (void)fn;
    (void)dispatch;
    return sizeof(DistTensor) + sizeof(DistTask) + sizeof(DistTaskArgs) +
           sizeof(DistTaskView) + sizeof(DistCallConfig) + sizeof(DistWorkerOptions);
}
