/*
 * signals.c - ticking the latency windows of servers and backends (see
 * signals.h). Control loop only.
 */
#include <stdlib.h>
#include <string.h>

#include "signals.h"

static struct ev_loop		*sloop;
static struct backend_list	*sbackends;
static ev_timer			 tick;

static const char *const names[LAT_MAX] = {
	[LAT_CONNECT] = "connect",
	[LAT_TTFB] = "ttfb",
	[LAT_SESSION] = "session",
};

const char *
signals_name(enum server_lat k)
{
	return k < LAT_MAX ? names[k] : "?";
}

static bool
has_traffic(const struct server *s)
{
	struct hist_counts c;

	hist_read(&s->lat[LAT_CONNECT], &c);
	return c.count > 0;
}

static void
tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct backend	*be;
	struct server	*s;

	(void)loop;
	(void)t;
	(void)revents;
	TAILQ_FOREACH(be, sbackends, entry) {
		hist_window_tick(&be->queue_win, &be->queue);
		TAILQ_FOREACH(s, &be->servers, entry) {
			/* Windows only for servers that saw traffic: a table
			 * of 100 000 idle servers costs nothing here. */
			if (s->lat_win == NULL && (!has_traffic(s) ||
			    (s->lat_win = calloc(LAT_MAX,
			    sizeof(*s->lat_win))) == NULL))
				continue;
			for (int k = 0; k < LAT_MAX; k++)
				hist_window_tick(&s->lat_win[k], &s->lat[k]);
		}
	}
}

void
signals_start(struct ev_loop *loop, struct backend_list *backends)
{
	struct backend *be;

	sloop = loop;
	sbackends = backends;
	TAILQ_FOREACH(be, backends, entry)
		hist_window_init(&be->queue_win);
	ev_timer_init(&tick, tick_cb, HIST_TICK_MS / 1000.0,
	    HIST_TICK_MS / 1000.0);
	ev_set_priority(&tick, EV_MINPRI);
	ev_timer_start(loop, &tick);
	ev_unref(loop);
}

void
signals_stop(void)
{
	if (sloop == NULL)
		return;
	ev_ref(sloop);
	ev_timer_stop(sloop, &tick);
	sloop = NULL;
}

void
signals_server_recent(const struct server *s, enum server_lat k,
    struct hist_counts *out)
{
	if (s->lat_win != NULL)
		hist_window_recent(&s->lat_win[k], &s->lat[k], out);
	else
		hist_read(&s->lat[k], out);	/* all of it: since start */
}

void
signals_backend_recent(const struct backend *be, enum server_lat k,
    struct hist_counts *out)
{
	const struct server	*s;
	struct hist_counts	 c;

	memset(out, 0, sizeof(*out));
	TAILQ_FOREACH(s, &be->servers, entry) {
		signals_server_recent(s, k, &c);
		for (int i = 0; i < HIST_NBUCKETS; i++)
			out->bucket[i] += c.bucket[i];
		out->count += c.count;
		out->sum_us += c.sum_us;
	}
}

void
signals_queue_recent(const struct backend *be, struct hist_counts *out)
{
	hist_window_recent(&be->queue_win, &be->queue, out);
}
