/*
 * scaleexpr.h - the conditions of [backend] scale_up = and scale_down =.
 *
 * Pure: text in, a compiled expression or an error with its column out;
 * an expression and signal values in, true or false out. No allocation,
 * no clock (the caller passes the time to the "for" tracker).
 *
 *   expr    := cond [ "for" DURATION ]
 *   cond    := conj { "or" conj }
 *   conj    := unary { "and" unary }
 *   unary   := "not" unary | "(" cond ")" | SIGNAL OP VALUE
 *   OP      := "<" | "<=" | ">" | ">=" | "==" | "!="
 *   VALUE   := NUMBER [ UNIT ]       NUMBER: digits [ "." digits ]
 *   UNIT    := "us" | "ms" | "s" | "m" (time signals: required)
 *            | "%"                   (percent signals: optional)
 *                                    (count signals: none)
 *   DURATION:= NUMBER ( "ms" | "s" | "m" ), from 0 to 1 h
 *
 * e.g. "ttfb_p95 > 200ms for 30s",
 *      "sessions_per_server < 2 and not (queue_p95 > 0ms) for 1m".
 * Keywords and signal names are lower case; "and" binds tighter than
 * "or"; blanks separate tokens and a number and its unit are written
 * together. A comparison with a signal that has no value (NaN: no session
 * ended in the window, no server reports its load) is false.
 */
#ifndef SHOAL_SCALEEXPR_H
#define SHOAL_SCALEEXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCALEEXPR_TEXT_MAX	4096	/* longest expression accepted: any
					   canonical text (scaleexpr_format)
					   of 63 nodes fits */
#define SCALEEXPR_NODES_MAX	63	/* comparisons + and/or/not */
#define SCALEEXPR_DEPTH_MAX	16	/* nesting of ( and not */
#define SCALEEXPR_FOR_MAX_MS	3600000	/* "for" at most 1 h */
#define SCALEEXPR_ERR_MAX	160	/* error text, NUL included */
#define SCALEEXPR_NUM_MAX	32	/* digits of a number as written */

/*
 * The signals, per backend, as the control loop computes them each tick.
 * Times are in milliseconds, percentages 0-100, counts plain.
 */
enum scaleexpr_signal {
	SCALE_CONNECT_P50,	/* time to connect to a server, recent window */
	SCALE_CONNECT_P95,
	SCALE_CONNECT_P99,
	SCALE_TTFB_P50,		/* connect to the server's first byte */
	SCALE_TTFB_P95,
	SCALE_TTFB_P99,
	SCALE_DURATION_P50,	/* whole session */
	SCALE_DURATION_P95,
	SCALE_DURATION_P99,
	SCALE_QUEUE_P50,	/* wait for an eligible server (timeout_queue) */
	SCALE_QUEUE_P95,
	SCALE_QUEUE_P99,
	SCALE_SESSIONS,		/* active sessions of the backend */
	SCALE_SESSIONS_PER_SERVER, /* sessions / up servers */
	SCALE_UP_SERVERS,	/* servers taking new sessions */
	SCALE_SERVERS,		/* servers in the backend, any state */
	SCALE_QUEUED,		/* clients waiting for a server now */
	SCALE_SESSION_RATE,	/* new sessions per second, recent window */
	SCALE_LOAD_AVG,		/* mean reported load of up servers, % */
	SCALE_LOAD_MAX,		/* highest reported load, % */
	SCALE_NSIGNALS
};

enum scaleexpr_kind {
	SCALE_KIND_TIME,	/* ms; a unit is required */
	SCALE_KIND_COUNT,	/* no unit */
	SCALE_KIND_PERCENT,	/* 0-100; "%" optional */
};

/* One node of the compiled expression (an array, children by index). */
struct scaleexpr_node {
	uint8_t		 type;		/* SCALE_N_* (scaleexpr.c) */
	uint8_t		 signal;	/* comparison: enum scaleexpr_signal */
	uint8_t		 cmp;		/* comparison: operator */
	uint8_t		 unit;		/* comparison: as written, for format */
	int16_t		 a, b;		/* children (not: a only) */
	double		 value;		/* comparison: in the signal's unit */
	char		 num[SCALEEXPR_NUM_MAX + 1]; /* comparison: the digits
					   as written, for format */
};

/* A compiled expression; a plain value (copy it, no _free). */
struct scaleexpr {
	struct scaleexpr_node	 node[SCALEEXPR_NODES_MAX];
	int			 nnodes;
	int			 root;		/* index into node[] */
	uint64_t		 for_ms;	/* 0 when no "for" */
	uint32_t		 used;		/* bit per signal it reads */
};

/*
 * Compile text. Returns 0, or -1 with err (errsz bytes, SCALEEXPR_ERR_MAX
 * is enough) set to "column N: what was wrong" (N counted from 1 in text),
 * e.g. "column 10: time value needs a unit (us, ms, s, m)". *e is
 * unspecified after an error.
 */
int		 scaleexpr_parse(struct scaleexpr *e, const char *text,
		    char *err, size_t errsz);

/*
 * Evaluate against values[SCALE_NSIGNALS] (NaN = no value). Only the
 * signals in e->used are read.
 */
bool		 scaleexpr_eval(const struct scaleexpr *e, const double *values);

/*
 * The canonical text of e into buf (bufsz bytes): single blanks,
 * parentheses only where needed, numbers and units as they were written
 * (so the text means exactly the same, with no rounding). Parsing it gives an expression that formats the same.
 * Returns the length it needed (as snprintf), -1 never.
 */
int		 scaleexpr_format(const struct scaleexpr *e, char *buf,
		    size_t bufsz);

/* "ttfb_p95", ... (static), "?" outside the enum. */
const char	*scaleexpr_signal_name(int);

/* The signal named name, or -1. */
int		 scaleexpr_signal_find(const char *name);

/* enum scaleexpr_kind of a signal. */
enum scaleexpr_kind scaleexpr_signal_kind(int);

/*
 * "for" tracking: has a condition, sampled at increasing times, been true
 * at every sample for at least for_ms? Sampled by the control loop once
 * per tick; a false sample starts over.
 */
struct scaleexpr_for {
	bool		 holding;	/* true at the last sample */
	uint64_t	 since_ms;	/* first true sample of the streak */
};

/* Both: zeroed is the initial state. */
void		 scaleexpr_for_reset(struct scaleexpr_for *);

/*
 * Record one sample (cond at now_ms) and say whether the condition has
 * held for for_ms (for_ms 0: at the first true sample). Once true, it
 * stays true at each further true sample until scaleexpr_for_reset(),
 * which the caller does when it acts, so that the next action needs a
 * fresh streak of for_ms.
 */
bool		 scaleexpr_for_update(struct scaleexpr_for *, bool cond,
		    uint64_t now_ms, uint64_t for_ms);

/* How long the current streak has lasted at now_ms (0 if not holding). */
uint64_t	 scaleexpr_for_held_ms(const struct scaleexpr_for *,
		    uint64_t now_ms);

#endif /* SHOAL_SCALEEXPR_H */
