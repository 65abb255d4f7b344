/*
 * fuzz_loadsrc.c - libFuzzer target for shoal-announce's report parsers:
 * a --load-cmd's output, a --weight-file's content and a /proc/stat line.
 *
 * Properties beyond "no crash, no UB": an accepted load is 0-100 and an
 * accepted weight 0-256; a refusal always gives a reason; nothing past
 * the input's length is read (the input is copied to an exact-size
 * buffer, which ASan guards); the CPU use of two samples is -1 or 0-100.
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_loadsrc -max_total_time=30 WORKDIR tests/fuzz/corpus/loadsrc
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadsrc.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_loadsrc: property violated: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct loadsrc_cpu	 a, b;
	const char		*why;
	char			*buf, line[600];
	int			 v;

	if ((buf = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	why = NULL;
	if (loadsrc_parse_load(buf, size, &v, &why) == 0) {
		if (v < 0 || v > 100)
			fail("load outside 0-100");
	} else if (why == NULL)
		fail("load refused without a reason");
	why = NULL;
	if (loadsrc_parse_weight(buf, size, &v, &why) == 0) {
		if (v < 0 || v > 256)
			fail("weight outside 0-256");
	} else if (why == NULL)
		fail("weight refused without a reason");
	free(buf);
	if (size < sizeof(line)) {
		memcpy(line, data, size);
		line[size] = '\0';
		if (loadsrc_cpu_parse(line, &a) == 0) {
			if (a.busy > a.total)
				fail("busy above total");
			b = a;
			b.total += 100;
			b.busy += 30;
			v = loadsrc_cpu_busy(&a, &b);
			if (v != -1 && (v < 0 || v > 100))
				fail("cpu use outside 0-100");
		}
	}
	return 0;
}
