/*
 * scale.h - the scale conditions of backends ([backend] scale_up =,
 * scale_down =), evaluated by the control loop every SCALE_TICK seconds
 * over the backend's signals, and the hook they run (scale_hook =).
 *
 * Control loop only. A hook runs in its own process group, never waited
 * for: its output is read through a pipe and logged, its end reaped by an
 * ev_child watcher; at most one per backend at a time, then
 * scale_cooldown before the next; killed after scale_hook_timeout.
 */
#ifndef SHOAL_SCALE_H
#define SHOAL_SCALE_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "scaleexpr.h"
#include "server.h"

#define SCALE_TICK		1.0	/* seconds between evaluations */
#define SCALE_RATE_SLOTS	10	/* session_rate: over the last 10 s */
#define SCALE_OUT_LINE		200	/* hook output: longest line logged */
#define SCALE_OUT_LINES		50	/* ... and lines logged per run */
#define SCALE_OUT_GRACE		1.0	/* s: output read after it exited */

enum scale_action {
	SCALE_ACT_UP = 0,
	SCALE_ACT_DOWN,
	SCALE_ACT_MAX,
};

/* Per backend, kept across reloads (struct backend's `scale`). */
struct scale_state {
	struct scaleexpr_for	 hold[SCALE_ACT_MAX];	/* "for" streaks */
	int			 wanted;		/* -1, 0, +1 */
	bool			 acted;			/* a hook ran on it */
	double			 cooldown_until;	/* ev_time() */
	/* session_rate: totals of the last ticks */
	uint64_t		 rate_total[SCALE_RATE_SLOTS];
	double			 rate_at[SCALE_RATE_SLOTS];
	unsigned		 rate_next, rate_n;
	/* the hook */
	pid_t			 pid;			/* 0 = not running */
	enum scale_action	 running;
	double			 started;
	ev_child		 child;
	ev_io			 out;
	ev_timer		 deadline;
	int			 out_fd;		/* -1 = closed */
	bool			 exited;
	int			 status;		/* exit code, 128+N */
	char			 line[SCALE_OUT_LINE + 1];
	size_t			 linelen;
	int			 lines;			/* logged this run */
	uint64_t		 runs[SCALE_ACT_MAX];
	uint64_t		 failed[SCALE_ACT_MAX];
	/* the last run, for stats */
	bool			 have_last;
	enum scale_action	 last_action;
	int			 last_status;
	double			 last_end;
	double			 last_duration;
};

/* Evaluate every backend's conditions every SCALE_TICK on loop. */
void		 scale_start(struct ev_loop *, struct backend_list *);
/* Stop evaluating; running hooks are left to finish on their own (their
 * process groups get SIGTERM). */
void		 scale_stop(void);

/* The backend's signals now (NaN = no value), as the conditions see
 * them. */
void		 scale_signals(const struct backend *,
		    double values[SCALE_NSIGNALS]);

/* "up", "down". */
const char	*scale_action_name(enum scale_action);

#endif /* SHOAL_SCALE_H */
