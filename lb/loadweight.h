/*
 * loadweight.h - a server's effective weight: its configured weight, bent
 * by the load it reports and by slow start. Pure arithmetic, no clock.
 *
 *   effective = ceil(weight * LOADWEIGHT_SCALE * load% / 100 * ramp / 1000)
 *               at least 1 when weight > 0; 0 when weight is 0
 *
 *   load%  = 100 - load, kept within [LOADWEIGHT_FLOOR_PCT, 100]:
 *            load 0 -> 100 %, 40 -> 60 %, 90..100 -> 10 %.
 *            100 % when there is no usable report: none yet, older than
 *            LOADWEIGHT_STALE_INTERVALS of the reporter's interval, or
 *            outside 0-100. A silent or absurd server keeps its configured
 *            weight; it is never pushed to 0.
 *   ramp   = permille of the way through slow start: 1000 * up_for /
 *            slowstart, kept within [LOADWEIGHT_RAMP_START_PCT * 10, 1000];
 *            1000 without slow start or once it is over (HAProxy's
 *            `slowstart`: weight and so connection share grow linearly
 *            from about 5 % to 100 %).
 *
 * Effective weights are in 1/LOADWEIGHT_SCALE units of a configured
 * weight (HAProxy's BE_WEIGHT_SCALE is the same idea): a weight-1 server
 * at 5 % of slow start is 1/16, not rounded up to a full 1. The floor and
 * the ceiling keep every eligible server in its pool: even when all
 * servers report 100, each keeps 10 % of its weight and the pool shares
 * traffic as configured.
 */
#ifndef SHOAL_LOADWEIGHT_H
#define SHOAL_LOADWEIGHT_H

#include <stdbool.h>
#include <stdint.h>

#define LOADWEIGHT_SCALE		16	/* effective units per weight unit */
#define LOADWEIGHT_FLOOR_PCT		10	/* load never takes more than 90 % */
#define LOADWEIGHT_STALE_INTERVALS	3	/* older reports are ignored */
#define LOADWEIGHT_DEFAULT_INTERVAL_MS	1000	/* when the interval is unknown */
#define LOADWEIGHT_RAMP_START_PCT	5	/* slow start begins here */
#define LOADWEIGHT_MAX	(256 * LOADWEIGHT_SCALE)	/* weight 256, full */

/* The last load report of a server, as the caller keeps it. */
struct loadweight_report {
	bool		 have;		/* a report arrived at least once */
	int		 load;		/* as reported; 0-100 is usable */
	uint64_t	 age_ms;	/* since it arrived */
	uint64_t	 interval_ms;	/* reporter's interval (ttl / 3.5); 0 = unknown */
};

/* Whether r is used: present, 0-100, and at most 3 intervals old. */
bool		 loadweight_report_usable(const struct loadweight_report *r);

/* The load factor in percent, LOADWEIGHT_FLOOR_PCT..100 (r may be NULL). */
int		 loadweight_load_pct(const struct loadweight_report *r);

/*
 * The slow start ramp in permille, LOADWEIGHT_RAMP_START_PCT * 10..1000,
 * for a server eligible for up_for_ms; slowstart_ms 0 means no slow start
 * (1000).
 */
int		 loadweight_ramp_permille(uint64_t up_for_ms,
		    uint64_t slowstart_ms);

/*
 * The effective weight (0..LOADWEIGHT_MAX) of a server of configured
 * weight 0..256 (clamped), reported load r (NULL: none), eligible for
 * up_for_ms, in a backend with slowstart_ms (0: none). Weight 0 stays 0
 * (an operator's "no new sessions"); any other weight gives at least 1.
 */
uint32_t	 loadweight_effective(int weight,
		    const struct loadweight_report *r, uint64_t up_for_ms,
		    uint64_t slowstart_ms);

#endif /* SHOAL_LOADWEIGHT_H */
