/*
 * stats.h - the stats listener ([stats] bind): "/" an HTML page in the
 * spirit of HAProxy's port 1936 page, "/stats.json" the same data, and
 * "/metrics" in the Prometheus text format. Runs in the control loop.
 */
#ifndef SHOAL_STATS_H
#define SHOAL_STATS_H

#include "control.h"
#include "sbuf.h"

/* Bind the [stats] listener if configured; 0, or -1 (logged). */
int	stats_start(struct control *);

/* Follow a reload: rebind if the address changed. 0 or -1 (old kept). */
int	stats_reload(const struct conf *);

/* Close the listener and every stats client. */
void	stats_stop(void);

/* Stats clients now, and those closed at accept (all slots busy
 * answering) or evicted (an incomplete head giving way), since start. */
void	stats_clients(size_t *active, uint64_t *refused, uint64_t *evicted);

/* Stop hook: close the listener (its port is free for a successor);
 * connected clients are answered. */
void	stats_stop_listening(void);

/* The documents, appended to out. Also used by the admin socket. */
void	stats_json(struct control *, struct sbuf *out);
void	stats_metrics(struct control *, struct sbuf *out);
void	stats_html(struct control *, struct sbuf *out);

#endif /* SHOAL_STATS_H */
