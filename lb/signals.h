/*
 * signals.h - the latency signals of servers and backends (connect time,
 * time to first byte, session duration; queue wait per backend), kept as
 * histograms (hist.h) that workers fill, with a recent window the control
 * loop ticks every HIST_TICK_MS.
 */
#ifndef SHOAL_SIGNALS_H
#define SHOAL_SIGNALS_H

#include <ev.h>

#include "hist.h"
#include "server.h"

/* Tick the windows of every server of backends from a timer on loop. */
void		 signals_start(struct ev_loop *, struct backend_list *);
void		 signals_stop(void);

/* The recent window (55-60 s) of a server's signal k; zero counts when
 * it has none. */
void		 signals_server_recent(const struct server *, enum server_lat k,
		    struct hist_counts *);
/* A backend's: signal k summed over its servers' recent windows. */
void		 signals_backend_recent(const struct backend *,
		    enum server_lat k, struct hist_counts *);
/* A backend's queue wait, recent window. */
void		 signals_queue_recent(const struct backend *,
		    struct hist_counts *);

/* Names of the signals in JSON and metrics: "connect", "ttfb",
 * "session". */
const char	*signals_name(enum server_lat);

#endif /* SHOAL_SIGNALS_H */
