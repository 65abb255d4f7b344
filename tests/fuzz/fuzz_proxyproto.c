/*
 * fuzz_proxyproto.c - libFuzzer target for the PROXY protocol decoder.
 *
 * Properties checked beyond "no crash, no leak, no UB": the answer is -1
 * with a reason, 0, or a length within the input and PROXYPROTO_MAX; a
 * proper prefix of an accepted header is never refused nor accepted (it
 * needs more bytes); a refusal stands whatever bytes follow; an accepted
 * header with addresses re-encodes, in its own version, to a header that
 * decodes to the same addresses. Seeds: tests/fuzz/corpus/proxyproto.
 *
 *   build:  clang, -fsanitize=fuzzer,address,undefined (tests/meson.build)
 *   run:    fuzz_proxyproto -max_total_time=60 WORKDIR \
 *               tests/fuzz/corpus/proxyproto
 */
#include <netinet/in.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_proxyproto: property violated: %s\n", what);
	abort();
}

static int
decode(const uint8_t *b, size_t n, struct proxyproto_hdr *h)
{
	const char	*why = NULL;
	int		 r;

	r = proxyproto_decode(b, n, h, &why);
	if (r < -1 || (r > 0 && ((size_t)r > n || r > PROXYPROTO_MAX)))
		fail("length outside the input or the limit");
	if (r == -1 && (why == NULL || why[0] == '\0'))
		fail("refusal without a reason");
	return r;
}

static size_t
addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t		 more[PROXYPROTO_MAX * 2 + 8];
	uint8_t			 enc[PROXYPROTO_MAX];
	struct proxyproto_hdr	 h, h2;
	int			 r, n;

	if (size > PROXYPROTO_MAX * 2)
		return 0;
	r = decode(data, size, &h);
	if (r == -1) {
		memcpy(more, data, size);
		memcpy(more + size, "\r\n\r\n\0\0\0\0", 8);
		if (decode(more, size + 8, &h2) != -1)
			fail("a refused prefix was accepted with more bytes");
		return 0;
	}
	if (r == 0)
		return 0;
	if (decode(data, (size_t)r - 1, &h2) != 0 ||
	    decode(data, (size_t)r / 2, &h2) != 0 || decode(data, 1, &h2) != 0)
		fail("a proper prefix of a header did not ask for more");
	if (!h.has_addr)
		return 0;
	if (h.src.ss_family != h.dst.ss_family)
		fail("decoded families differ");
	n = proxyproto_encode(h.version, (struct sockaddr *)&h.src,
	    (struct sockaddr *)&h.dst, NULL, 0, enc, sizeof(enc));
	if (n <= 0)
		fail("decoded addresses do not encode");
	if (decode(enc, (size_t)n, &h2) != n || !h2.has_addr ||
	    h2.version != h.version ||
	    memcmp(&h.src, &h2.src, addr_len(&h.src)) != 0 ||
	    memcmp(&h.dst, &h2.dst, addr_len(&h.dst)) != 0)
		fail("re-encoding does not decode to the same addresses");
	return 0;
}
