/*
 * loadsrc.h - what shoal-announce reports as its server's load (the load
 * TLV) and weight: parsing a --load-cmd's output and a --weight-file, and
 * the host's CPU use for --load auto. Pure except loadsrc_cpu_read().
 */
#ifndef SHOAL_LOADSRC_H
#define SHOAL_LOADSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOADSRC_OUT_MAX	256	/* bytes of a --load-cmd's output kept */

/*
 * The load in a --load-cmd's output (len bytes, not NUL terminated): its
 * first line, blanks around it allowed, a number from 0 to 100 with an
 * optional fraction and an optional "%" ("37", "37.6", "37%"), rounded to
 * the nearest integer. 0 with *load set, or -1 with *why (static) set.
 */
int		 loadsrc_parse_load(const char *out, size_t len, int *load,
		    const char **why);

/*
 * The weight in a --weight-file's content (len bytes): its first line, an
 * integer 0-256 with blanks around it. 0 with *weight set, or -1 with *why.
 */
int		 loadsrc_parse_weight(const char *text, size_t len, int *weight,
		    const char **why);

/* CPU time counters of the whole host, from the first line of /proc/stat. */
struct loadsrc_cpu {
	uint64_t	 busy;		/* user nice system irq softirq steal */
	uint64_t	 total;		/* busy + idle + iowait */
};

/* Parse the "cpu ..." line of /proc/stat. 0, or -1 if it is not one. */
int		 loadsrc_cpu_parse(const char *line, struct loadsrc_cpu *);

/* Read /proc/stat. 0, or -1 (errno). */
int		 loadsrc_cpu_read(struct loadsrc_cpu *);

/*
 * The host's CPU use between two samples, in percent 0-100 (rounded), or
 * -1 if no time passed (or the counters went backwards).
 */
int		 loadsrc_cpu_busy(const struct loadsrc_cpu *before,
		    const struct loadsrc_cpu *after);

#endif /* SHOAL_LOADSRC_H */
