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

#include "server.h"

/*
 * Start checking every server of every backend in the list, and install
 * the passive-failure hook (workers' failures wake the control loop).
 * 0, or -1 with errno.
 */
int	health_start(struct ev_loop *, struct backend_list *);

/* A server entered the table at runtime (announce, admin): check it. */
void	health_add(struct server *);

/* A server leaves the table: stop checking it and free the check state.
 * Call before server_remove(). Accepts servers that were never checked. */
void	health_remove(struct server *);

/* An admin state change: maint stops checks, leaving maint restarts them
 * from `checking`. */
void	health_admin_changed(struct server *);

/* Stop everything (exit). */
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

#endif /* SHOAL_HEALTH_H */
