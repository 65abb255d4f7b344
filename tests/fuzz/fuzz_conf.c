/*
 * fuzz_conf.c - libFuzzer target for the configuration loader and the
 * value parsers: any bytes in, a conf or a FILE:LINE error out, never a
 * crash, a hang or a leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		 err[CONF_ERR_MAX], *text;
	struct conf	*c;
	struct conf_addr a;
	const char	*why;
	uint32_t	 ms;
	long		 v;
	bool		 b;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	c = conf_load_string("fuzz.ini", text, err);
	if (c == NULL && strncmp(err, "fuzz.ini", 8) != 0)
		abort();		/* every error names the file */
	conf_free(c);
	if (size < 256) {
		(void)conf_parse_addr(text, &a, &why);
		(void)conf_parse_duration(text, &ms, &why);
		(void)conf_parse_int(text, -1000000, 1000000, &v, &why);
		(void)conf_parse_bool(text, &b, &why);
	}
	free(text);
	return 0;
}
