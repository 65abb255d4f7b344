/*
 * loadsrc.c - load and weight sources of shoal-announce (loadsrc.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "loadsrc.h"

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The first line of text[0, len) without surrounding blanks: [*b, *e). */
static void
first_line(const char *text, size_t len, size_t *b, size_t *e)
{
	size_t i = 0, end;

	while (i < len && text[i] != '\n')
		i++;
	end = i;
	i = 0;
	while (i < end && blank(text[i]))
		i++;
	while (end > i && blank(text[end - 1]))
		end--;
	*b = i;
	*e = end;
}

int
loadsrc_parse_load(const char *out, size_t len, int *load, const char **why)
{
	size_t		 i, e;
	unsigned int	 whole = 0, tenth = 0;
	int		 digits = 0;

	first_line(out, len, &i, &e);
	if (i == e) {
		*why = "no output";
		return -1;
	}
	for (; i < e && out[i] >= '0' && out[i] <= '9'; i++) {
		if (++digits > 3) {
			*why = "not a number from 0 to 100";
			return -1;
		}
		whole = whole * 10 + (unsigned int)(out[i] - '0');
	}
	if (digits == 0) {
		*why = "not a number from 0 to 100";
		return -1;
	}
	if (i < e && out[i] == '.') {
		i++;
		if (i == e || out[i] < '0' || out[i] > '9') {
			*why = "not a number from 0 to 100";
			return -1;
		}
		tenth = (unsigned int)(out[i] - '0');
		while (i < e && out[i] >= '0' && out[i] <= '9')
			i++;
	}
	if (i < e && out[i] == '%')
		i++;
	if (i != e) {
		*why = "not a number from 0 to 100";
		return -1;
	}
	if (tenth >= 5)
		whole++;
	if (whole > 100 || (whole == 100 && tenth > 0 && tenth < 5)) {
		*why = "above 100";
		return -1;
	}
	*load = (int)whole;
	return 0;
}

int
loadsrc_parse_weight(const char *text, size_t len, int *weight,
    const char **why)
{
	size_t		 i, e;
	unsigned int	 v = 0;

	first_line(text, len, &i, &e);
	if (i == e) {
		*why = "empty";
		return -1;
	}
	for (; i < e; i++) {
		if (text[i] < '0' || text[i] > '9' || v > 256) {
			*why = "not an integer from 0 to 256";
			return -1;
		}
		v = v * 10 + (unsigned int)(text[i] - '0');
	}
	if (v > 256) {
		*why = "not an integer from 0 to 256";
		return -1;
	}
	*weight = (int)v;
	return 0;
}

#define CPU_FIELDS	8
#define CPU_VALUE_MAX	(1ULL << 50)	/* ticks; real counters are far below */

int
loadsrc_cpu_parse(const char *line, struct loadsrc_cpu *c)
{
	uint64_t	 v[CPU_FIELDS] = { 0 };
	const char	*p;
	int		 n;

	/* cpu  user nice system idle iowait irq softirq steal ... */
	if (strncmp(line, "cpu ", 4) != 0)
		return -1;
	p = line + 4;
	for (n = 0; n < CPU_FIELDS; n++) {
		while (*p == ' ')
			p++;
		if (*p < '0' || *p > '9')
			break;
		while (*p >= '0' && *p <= '9') {
			v[n] = v[n] * 10 + (uint64_t)(*p++ - '0');
			if (v[n] >= CPU_VALUE_MAX)
				return -1;
		}
	}
	if (n < 4)
		return -1;
	c->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	c->total = c->busy + v[3] + v[4];
	return 0;
}

int
loadsrc_cpu_read(struct loadsrc_cpu *c)
{
	char	 line[512];
	FILE	*f;
	int	 rc = -1;

	if ((f = fopen("/proc/stat", "re")) == NULL)
		return -1;
	if (fgets(line, sizeof(line), f) != NULL)
		rc = loadsrc_cpu_parse(line, c);
	fclose(f);
	if (rc == -1)
		errno = EINVAL;
	return rc;
}

int
loadsrc_cpu_busy(const struct loadsrc_cpu *a, const struct loadsrc_cpu *b)
{
	uint64_t dt, db;

	if (b->total <= a->total || b->busy < a->busy)
		return -1;
	dt = b->total - a->total;
	db = b->busy - a->busy;
	if (db > dt)
		db = dt;
	return (int)((db * 100 + dt / 2) / dt);
}
