/*
 * health.h - active health checks and passive observation.
 *
 * Runs in the control loop, never blocking it: one timer per checked
 * server, first check spread randomly over one interval. Check types per
 * backend: tcp, http, tls, send-expect (see docs/configuration.md). Rise/fall
 * hysteresis as in HAProxy. Health reports only through the server-table
 * API (server_set_health); it never touches sessions.
 */
#ifndef SHOAL_HEALTH_H
#define SHOAL_HEALTH_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "server.h"

/*
 * Start checking every server of every backend in the list, and install
 * the passive-failure hook (workers' failures wake the control loop).
 * The loop and the list must live until health_stop(). Call once.
 * 0, or -1 with errno.
 *
 * A check starts every check_interval, counted from the start of the
 * previous one (at once if that one took longer), and lasts at most
 * check_timeout. Results go to the server (check_result, check_detail,
 * check_duration_ms, last_check); state changes go through
 * server_set_health() with a reason like "L4CON: connection refused, 0ms".
 */
int	health_start(struct ev_loop *, struct backend_list *);

/*
 * Health follows the server table through this observer, which lb/main.c
 * installs with table_set_observer(): a server that joins is checked
 * (health_add), one that leaves is not (health_remove), an admin change
 * goes to health_admin_changed(), and a backend whose check settings
 * changed (health_settings_changed) has every server checked anew under
 * them (with check = none they are up).
 */
extern const struct table_observer health_observer;

/* True if b checks servers differently from a (type, request, expect,
 * TLS, port, interval, timeout, rise, fall). Pure. */
bool	health_settings_changed(const struct conf_backend *a,
	    const struct conf_backend *b);

/* A server entered the table (the observer's `joined`): check it,
 * the first check within one interval. No-op for check = none, before
 * health_start(), and for a server already checked; a server in maint
 * gets its state but no check until health_admin_changed(). */
void	health_add(struct server *);

/* A server leaves the table (`leaving`, while it is still listed): stop
 * checking it and free the check state (s->check becomes NULL). Accepts
 * servers that were never checked. */
void	health_remove(struct server *);

/* Its admin state changed (`admin_changed`): maint stops checks (a
 * running one is dropped without a verdict); leaving maint sets health to `checking` and
 * checks at once, so `rise` successes are needed before traffic. */
void	health_admin_changed(struct server *);

/* Stop everything (exit): remove the passive hook, stop every timer,
 * close every check socket, free every check state and TLS context. Servers
 * keep their health and last results. Workers may still run: the hook they
 * might be in only touches the loop, which must outlive them. */
void	health_stop(void);

/* The rise/fall state machine, pure, for tests. */
struct health_fsm {
	enum server_health	 state;		/* current */
	int			 ok_streak;	/* consecutive successes */
	int			 fail_streak;	/* consecutive failures */
	int			 rise, fall;	/* thresholds */
};

void	health_fsm_init(struct health_fsm *, int rise, int fall,
	    enum server_health initial);
/* Feed one check result; returns true if the state changed. */
bool	health_fsm_step(struct health_fsm *, bool ok);

/*
 * Parse an HTTP status line ("HTTP/1.1 200 OK", without or with its CR
 * or LF): the status code (100..999), or -1 if it is malformed. Pure.
 */
int	health_http_status(const char *line, size_t len);

#endif /* SHOAL_HEALTH_H */
