/*
 * hist.h - latency histograms: written by workers, read by the control loop.
 *
 * A histogram counts durations in microseconds into fixed buckets whose
 * upper bounds follow a 1-2-5 series from 50 us to 60 s (HIST_BOUNDS_US
 * below; the last bucket, +Inf, takes everything above 60 s). The bounds
 * are part of the /metrics contract: thresholds an operator is likely to
 * write (1ms, 200ms, 1s, ...) fall on a bound, so a percentile near them
 * is not blurred across two buckets.
 *
 *   worker threads                      control loop
 *   --------------                      ------------
 *   hist_add(h, us)   ---relaxed--->    hist_read(h, &now)        cumulative
 *   (two fetch_adds, no lock)           hist_window_tick(w, h)    every 5 s
 *                                       hist_window_recent(w, h)  last 55-60 s
 *                                       hist_quantile(&c, 0.95)
 *                                       hist_prom(b, name, labels, &c)
 *
 * hist_read() reads each counter once, relaxed: the buckets of one read
 * need not belong to the same instant, but count is the sum of the buckets
 * read (so quantiles are self-consistent) and sum_us trails or leads them
 * by at most the updates in flight.
 */
#ifndef SHOAL_HIST_H
#define SHOAL_HIST_H

#include <stdatomic.h>
#include <stdint.h>

struct sbuf;

#define HIST_NBOUNDS	19			/* finite upper bounds */
#define HIST_NBUCKETS	(HIST_NBOUNDS + 1)	/* + the +Inf bucket */
#define HIST_TICK_MS	5000			/* hist_window_tick period */
#define HIST_WINDOW_SLOTS 12			/* ticks in the window: 60 s */

/* Upper bounds in microseconds, inclusive (Prometheus "le"). */
#define HIST_BOUNDS_US {						\
	50, 100, 200, 500,				/* us */	\
	1000, 2000, 5000, 10000, 20000, 50000,		/* ms */	\
	100000, 200000, 500000,						\
	1000000, 2000000, 5000000, 10000000, 20000000,	/* s */		\
	60000000 }

extern const uint64_t	 hist_bounds_us[HIST_NBOUNDS];

/* The live histogram, shared: workers add, the control loop reads. */
struct hist {
	_Atomic uint64_t	 bucket[HIST_NBUCKETS];	/* per bucket, not cumulative */
	_Atomic uint64_t	 sum_us;		/* sum of all values added */
};

/* A plain copy (or a difference of two copies), owned by the reader. */
struct hist_counts {
	uint64_t		 bucket[HIST_NBUCKETS];	/* per bucket, not cumulative */
	uint64_t		 count;			/* sum of bucket[] */
	uint64_t		 sum_us;
};

/* The recent past of one histogram: a ring of cumulative snapshots. */
struct hist_window {
	struct hist_counts	 snap[HIST_WINDOW_SLOTS];	/* oldest at next */
	unsigned		 next;		/* slot the next tick writes */
	unsigned		 n;		/* snapshots taken, <= SLOTS */
};

/* Zero a histogram (before any worker sees it). */
void		 hist_init(struct hist *);

/* The bucket of a value: the first bound >= us, HIST_NBOUNDS for +Inf. */
static inline unsigned
hist_bucket(uint64_t us)
{
	unsigned	 i, idx = 0;

	/* Branch-free: a data-dependent early exit mispredicts more than
	 * 19 compares cost. */
	for (i = 0; i < HIST_NBOUNDS; i++)
		idx += us > hist_bounds_us[i];
	return idx;
}

/*
 * Count one duration of us microseconds. Any thread, no lock: two
 * relaxed atomic additions. The hot path's only cost; see
 * tests/unit/test_hist.c for its measured price.
 */
static inline void
hist_add(struct hist *h, uint64_t us)
{
	atomic_fetch_add_explicit(&h->bucket[hist_bucket(us)], 1,
	    memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/* Copy the live counters into *out (count computed from the buckets). */
void		 hist_read(const struct hist *, struct hist_counts *out);

/* *out = a - b, counter by counter (b taken before a; 0 if it went back). */
void		 hist_counts_sub(const struct hist_counts *a,
		    const struct hist_counts *b, struct hist_counts *out);

/*
 * The q-quantile (0 <= q <= 1) in microseconds, interpolated as
 * Prometheus' histogram_quantile() does: find the bucket holding rank
 * q * count, assume its values spread evenly between its lower bound (the
 * previous bound, 0 for the first) and its upper bound, and interpolate
 * linearly. A rank in the +Inf bucket gives the last finite bound (60 s).
 * So the error is at most the width of the bucket the answer falls in.
 * Returns -1 when count is 0 (no data: not "0 us").
 */
double		 hist_quantile(const struct hist_counts *, double q);

/*
 * Append one Prometheus histogram (text format 0.0.4): NAME_bucket lines
 * with cumulative counts and le in seconds, then NAME_sum (seconds) and
 * NAME_count. labels is a ready, escaped label list without braces
 * ("backend=\"app\",server=\"s1\""), or "" for none. The # HELP and
 * # TYPE lines are the caller's, once per family.
 */
void		 hist_prom(struct sbuf *, const char *name, const char *labels,
		    const struct hist_counts *);

/* An empty window. */
void		 hist_window_init(struct hist_window *);

/*
 * Record a snapshot of h. Call every HIST_TICK_MS from the control loop;
 * a late tick only stretches the window by its lateness.
 */
void		 hist_window_tick(struct hist_window *, const struct hist *h);

/*
 * The counts of the recent window: h now minus the oldest snapshot kept,
 * i.e. the last (HIST_WINDOW_SLOTS - 1) to HIST_WINDOW_SLOTS ticks (55 to
 * 60 s), or everything since hist_init while fewer ticks have run.
 */
void		 hist_window_recent(const struct hist_window *,
		    const struct hist *h, struct hist_counts *out);

#endif /* SHOAL_HIST_H */
