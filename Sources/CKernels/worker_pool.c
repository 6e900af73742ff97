#include "worker_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

// One word holds the job: generation (16 bits) | index count (24) | next unclaimed index (24).
// A worker claims an index with a compare-and-swap that also checks the generation, so a late
// worker can never take an index of a newer job; joining a job is optional (the submitter runs
// whatever nobody claimed), so a worker that misses one changes nothing but speed.
#define FIELD_BITS 24
#define FIELD_MASK ((UINT64_C(1) << FIELD_BITS) - 1)
#define MAX_WORKERS 63
// About 25 microseconds of PAUSE (23 ns each on Zen 5): enough to bridge the gap between one
// layer's loops and the next. Longer spins (8192 was measured) only took cores from rstpmd's
// decode and output threads (900-px PNGs: 29 -> 36 images/s) and gained nothing in training
// or inference.
#define SPINS_BEFORE_SLEEP 1024

static _Atomic uint64_t state;
static _Atomic int completed;
static _Atomic int sleepers;
static void (*job_body)(void *, int);
static void *job_context;

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int worker_count;  // guarded by submit_lock
static _Thread_local int inside_job;

static inline uint64_t generation_of(uint64_t word) { return word >> (2 * FIELD_BITS); }
static inline uint64_t count_of(uint64_t word) { return (word >> FIELD_BITS) & FIELD_MASK; }
static inline uint64_t next_of(uint64_t word) { return word & FIELD_MASK; }

static void participate(uint64_t generation) {
    uint64_t word = atomic_load(&state);
    for (;;) {
        if (generation_of(word) != generation || next_of(word) >= count_of(word)) return;
        if (!atomic_compare_exchange_weak(&state, &word, word + 1)) continue;
        // The claimed index keeps this job unfinished, so its body and context stay as read.
        job_body(job_context, (int)next_of(word));
        atomic_fetch_add(&completed, 1);
        word = atomic_load(&state);
    }
}

static void *worker_main(void *argument) {
    uint64_t seen = (uint64_t)(uintptr_t)argument;
    inside_job = 1;  // a body that calls rstpm_parallel_for runs it inline
    for (;;) {
        int spins = 0;
        uint64_t word;
        while (generation_of(word = atomic_load(&state)) == seen) {
            if (++spins < SPINS_BEFORE_SLEEP) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while (generation_of(atomic_load(&state)) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
            spins = 0;
        }
        seen = generation_of(word);
        participate(seen);
    }
    return NULL;
}

// Called with submit_lock held. Workers that cannot be started are simply not there.
static void ensure_workers(int wanted) {
    if (wanted > MAX_WORKERS) wanted = MAX_WORKERS;
    while (worker_count < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        void *start = (void *)(uintptr_t)generation_of(atomic_load(&state));
        int failed = pthread_create(&thread, &attributes, worker_main, start);
        pthread_attr_destroy(&attributes);
        if (failed) return;
        worker_count += 1;
    }
}

void rstpm_parallel_for(int count, int threads, void (*body)(void *context, int index), void *context) {
    if (count <= 0) return;
    if (threads <= 1 || count == 1 || (uint64_t)count > FIELD_MASK || inside_job ||
        pthread_mutex_trylock(&submit_lock) != 0) {
        for (int index = 0; index < count; index++) body(context, index);
        return;
    }
    ensure_workers(threads - 1);
    job_body = body;
    job_context = context;
    atomic_store(&completed, 0);
    uint64_t generation = (generation_of(atomic_load(&state)) + 1) & 0xFFFF;
    atomic_store(&state, (generation << (2 * FIELD_BITS)) | ((uint64_t)count << FIELD_BITS));
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    inside_job = 1;
    participate(generation);
    inside_job = 0;
    for (int spins = 0; atomic_load(&completed) < count; spins++) {
        if (spins < SPINS_BEFORE_SLEEP) cpu_relax();
        else sched_yield();  // a claimed index runs on a descheduled worker
    }
    pthread_mutex_unlock(&submit_lock);
}
