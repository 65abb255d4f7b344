/*
 * t.h - a tiny TAP producer for shoal's unit tests.
 *
 * ok(cond, fmt, ...) prints one TAP line; done_testing() prints the plan and
 * returns the exit status (non-zero if any test failed).
 */
#ifndef SHOAL_T_H
#define SHOAL_T_H

#include <stdarg.h>
#include <stdio.h>

static int t_count, t_failed;

__attribute__((format(printf, 3, 4)))
static inline int
t_ok(int cond, int line, const char *fmt, ...)
{
	va_list ap;

	t_count++;
	if (!cond)
		t_failed++;
	printf("%sok %d - ", cond ? "" : "not ", t_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		printf("#   failed at line %d\n", line);
	fflush(stdout);
	return cond;
}

#define ok(cond, ...)	t_ok(!!(cond), __LINE__, __VA_ARGS__)
#define is_int(a, b, name) \
	t_ok((long long)(a) == (long long)(b), __LINE__, "%s (got %lld, want %lld)", \
	    (name), (long long)(a), (long long)(b))

static inline int
done_testing(void)
{
	printf("1..%d\n", t_count);
	if (t_failed)
		printf("# %d of %d failed\n", t_failed, t_count);
	return t_failed ? 1 : 0;
}

#endif /* SHOAL_T_H */
