/*
 * fuzz_scaleexpr.c - libFuzzer target for the scale condition parser.
 *
 * Every input is parsed as the text of a scale_up = / scale_down = value.
 * Properties checked beyond "no crash, no leak, no UB": a refusal always
 * says "column N: why" with N inside the text (or just past it), in
 * printable ASCII whatever the input (it goes to logs); whatever
 * is accepted formats to a canonical text that parses again, to the same
 * canonical text, the same "for" and the same signals; evaluation never
 * reads a signal the expression does not list in `used`. Seeds:
 * tests/fuzz/corpus/scaleexpr; dictionary tests/fuzz/scaleexpr.dict.
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_scaleexpr -max_total_time=30 -dict=tests/fuzz/scaleexpr.dict
 *               WORKDIR tests/fuzz/corpus/scaleexpr
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scaleexpr.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_scaleexpr: property violated: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scaleexpr	 e, e2;
	char			 text[1100], err[SCALEEXPR_ERR_MAX];
	char			 c1[8192], c2[8192];
	double			 v[SCALE_NSIGNALS];
	unsigned long		 col;
	size_t			 len;
	int			 i, n;

	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	len = strlen(text);
	if (scaleexpr_parse(&e, text, err, sizeof(err)) == -1) {
		if (sscanf(err, "column %lu: ", &col) != 1 ||
		    strstr(err, ": ") == NULL || strlen(err) < 12)
			fail("refusal without 'column N: why'");
		if (col < 1 || col > len + 1)
			fail("error column outside the text");
		for (i = 0; err[i] != '\0'; i++)
			if ((unsigned char)err[i] < 0x20 ||
			    (unsigned char)err[i] > 0x7e)
				fail("error text not printable ASCII");
		return 0;
	}
	n = scaleexpr_format(&e, c1, sizeof(c1));
	if (n <= 0 || (size_t)n >= sizeof(c1))
		fail("accepted expression has no canonical text");
	if (scaleexpr_parse(&e2, c1, err, sizeof(err)) == -1)
		fail("canonical text does not parse");
	scaleexpr_format(&e2, c2, sizeof(c2));
	if (strcmp(c1, c2) != 0 || e.for_ms != e2.for_ms || e.used != e2.used)
		fail("canonical text is not stable");
	/* Unused signals hold a value that would abort if read as one. */
	for (i = 0; i < SCALE_NSIGNALS; i++)
		v[i] = (e.used & (1u << i)) ? (double)(size % 7) * 100 : NAN;
	if (scaleexpr_eval(&e, v) != scaleexpr_eval(&e2, v))
		fail("the canonical text evaluates differently");
	for (i = 0; i < SCALE_NSIGNALS; i++)
		v[i] = NAN;
	(void)scaleexpr_eval(&e, v);
	return 0;
}
