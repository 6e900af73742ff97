#ifndef RSTPM_WORKER_POOL_H
#define RSTPM_WORKER_POOL_H

/// Runs `body(context, i)` for every i in [0, count) on the calling thread and up to
/// `threads - 1` pool workers, and returns when all have run. Indices are handed out one at a
/// time, so the split of work does not depend on which thread runs what.
///
/// The workers spin briefly after each job before they sleep: a network's layers follow each
/// other every few tens of microseconds, and waking sleeping threads for every layer cost more
/// than the layer's own work on small inputs. One job at a time: a call made while another
/// thread's job runs, or from inside a body, runs its indices on its own thread.
void rstpm_parallel_for(int count, int threads, void (*body)(void *context, int index), void *context);

#endif
