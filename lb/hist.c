/*
 * hist.c - latency histograms: reading, windows, quantiles, /metrics text.
 *
 * Everything here runs on the control loop; the writers' side (hist_add)
 * is inline in hist.h.
 */
#include <string.h>

#include "hist.h"
#include "sbuf.h"

const uint64_t	 hist_bounds_us[HIST_NBOUNDS] = HIST_BOUNDS_US;

/* The bounds as Prometheus "le" values, in seconds. */
static const char *const hist_le[HIST_NBUCKETS] = {
	"5e-05", "0.0001", "0.0002", "0.0005",
	"0.001", "0.002", "0.005", "0.01", "0.02", "0.05",
	"0.1", "0.2", "0.5",
	"1", "2", "5", "10", "20",
	"60", "+Inf",
};

void
hist_init(struct hist *h)
{
	unsigned	 i;

	for (i = 0; i < HIST_NBUCKETS; i++)
		atomic_init(&h->bucket[i], 0);
	atomic_init(&h->sum_us, 0);
}

void
hist_read(const struct hist *h, struct hist_counts *out)
{
	unsigned	 i;

	out->count = 0;
	for (i = 0; i < HIST_NBUCKETS; i++) {
		out->bucket[i] = atomic_load_explicit(&h->bucket[i],
		    memory_order_relaxed);
		out->count += out->bucket[i];
	}
	out->sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
}

static uint64_t
sub0(uint64_t a, uint64_t b)
{
	return a >= b ? a - b : 0;
}

void
hist_counts_sub(const struct hist_counts *a, const struct hist_counts *b,
    struct hist_counts *out)
{
	unsigned	 i;

	out->count = 0;
	for (i = 0; i < HIST_NBUCKETS; i++) {
		out->bucket[i] = sub0(a->bucket[i], b->bucket[i]);
		out->count += out->bucket[i];
	}
	out->sum_us = sub0(a->sum_us, b->sum_us);
}

double
hist_quantile(const struct hist_counts *c, double q)
{
	double		 rank, below = 0, lo, hi;
	unsigned	 i;

	if (c->count == 0)
		return -1;
	if (!(q >= 0))		/* also NaN */
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)c->count;
	for (i = 0; i < HIST_NBUCKETS; i++) {
		if (c->bucket[i] > 0 && below + (double)c->bucket[i] >= rank)
			break;
		below += (double)c->bucket[i];
	}
	if (i >= HIST_NBOUNDS)		/* +Inf (or rounding past the end) */
		return (double)hist_bounds_us[HIST_NBOUNDS - 1];
	lo = i == 0 ? 0 : (double)hist_bounds_us[i - 1];
	hi = (double)hist_bounds_us[i];
	return lo + (hi - lo) * ((rank - below) / (double)c->bucket[i]);
}

void
hist_prom(struct sbuf *b, const char *name, const char *labels,
    const struct hist_counts *c)
{
	const char	*sep = labels[0] != '\0' ? "," : "";
	uint64_t	 cum = 0;
	unsigned	 i;

	for (i = 0; i < HIST_NBUCKETS; i++) {
		cum += c->bucket[i];
		sbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels,
		    sep, hist_le[i], (unsigned long long)cum);
	}
	if (labels[0] != '\0') {
		sbuf_printf(b, "%s_sum{%s} %llu.%06llu\n", name, labels,
		    (unsigned long long)(c->sum_us / 1000000),
		    (unsigned long long)(c->sum_us % 1000000));
		sbuf_printf(b, "%s_count{%s} %llu\n", name, labels,
		    (unsigned long long)cum);
	} else {
		sbuf_printf(b, "%s_sum %llu.%06llu\n", name,
		    (unsigned long long)(c->sum_us / 1000000),
		    (unsigned long long)(c->sum_us % 1000000));
		sbuf_printf(b, "%s_count %llu\n", name,
		    (unsigned long long)cum);
	}
}

void
hist_window_init(struct hist_window *w)
{
	memset(w, 0, sizeof(*w));
}

void
hist_window_tick(struct hist_window *w, const struct hist *h)
{
	hist_read(h, &w->snap[w->next]);
	w->next = (w->next + 1) % HIST_WINDOW_SLOTS;
	if (w->n < HIST_WINDOW_SLOTS)
		w->n++;
}

void
hist_window_recent(const struct hist_window *w, const struct hist *h,
    struct hist_counts *out)
{
	struct hist_counts	 now;
	unsigned		 oldest;

	hist_read(h, &now);
	if (w->n < HIST_WINDOW_SLOTS) {		/* younger than the window */
		*out = now;
		return;
	}
	oldest = w->next;
	hist_counts_sub(&now, &w->snap[oldest], out);
}
