/*
 * test_proxyproto.c - the PROXY protocol codec: the spec's examples, the
 * limits (107-byte v1 line, 4096-byte header), every refusal with its
 * reason, each header split at every byte offset (incomplete until the
 * last byte, whole after it), round trips through the encoder, mixed
 * families, LOCAL, unknown TLVs and CRC32C, and headers captured from
 * HAProxy 2.6 (send-proxy-v2, proxy-v2-options unique-id,crc32c).
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"
#include "t.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static struct sockaddr_storage
sa4(const char *a, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	inet_pton(AF_INET, a, &sin->sin_addr);
	return ss;
}

static struct sockaddr_storage
sa6(const char *a, uint16_t port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	inet_pton(AF_INET6, a, &sin6->sin6_addr);
	return ss;
}

/* "ADDR PORT" of a decoded address, for comparisons. */
static const char *
str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char	 a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(buf, len, "%s %u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(buf, len, "[%s] %u", a, ntohs(s->sin6_port));
	} else
		snprintf(buf, len, "family %d", ss->ss_family);
	return buf;
}

/* Decode expecting success with the given addresses ("" = no address). */
static void
expect_ok(const char *name, const uint8_t *b, size_t n, int len,
    const char *src, const char *dst)
{
	struct proxyproto_hdr	 h;
	const char		*why = NULL;
	char			 s1[80], s2[80];
	int			 r;

	r = proxyproto_decode(b, n, &h, &why);
	if (!ok(r == len, "%s: header length %d (got %d%s%s)", name, len, r,
	    r == -1 ? ": " : "", r == -1 ? why : ""))
		return;
	if (src[0] == '\0') {
		ok(!h.has_addr, "%s: no address (the connection's own)", name);
		return;
	}
	ok(h.has_addr && strcmp(str(&h.src, s1, sizeof(s1)), src) == 0 &&
	    strcmp(str(&h.dst, s2, sizeof(s2)), dst) == 0,
	    "%s: %s -> %s (got %s -> %s)", name, src, dst,
	    h.has_addr ? s1 : "-", h.has_addr ? s2 : "-");
}

static void
expect_err(const char *name, const uint8_t *b, size_t n, const char *reason)
{
	struct proxyproto_hdr	 h;
	const char		*why = NULL;
	int			 r;

	r = proxyproto_decode(b, n, &h, &why);
	ok(r == -1 && why != NULL && strstr(why, reason) != NULL,
	    "%s: refused, '%s' (got %d, '%s')", name, reason, r,
	    why ? why : "");
}

static void
expect_err_s(const char *name, const char *s, const char *reason)
{
	expect_err(name, (const uint8_t *)s, strlen(s), reason);
}

/* Every proper prefix of b[0, len) is incomplete; b itself is whole,
 * also with application bytes after it. */
static void
split_everywhere(const char *name, const uint8_t *b, size_t len)
{
	struct proxyproto_hdr	 h;
	const char		*why;
	uint8_t			 more[PROXYPROTO_MAX + 16];
	size_t			 k, bad = 0;
	int			 r;

	for (k = 0; k < len; k++) {
		why = NULL;
		if ((r = proxyproto_decode(b, k, &h, &why)) != 0) {
			if (bad++ == 0)
				printf("# %s: prefix %zu -> %d (%s)\n", name, k,
				    r, why ? why : "");
		}
	}
	ok(bad == 0, "%s: all %zu proper prefixes need more bytes", name, len);
	memcpy(more, b, len);
	memcpy(more + len, "GET / HTTP/1.0\r\n\r\n", 18);
	r = proxyproto_decode(more, len + 18, &h, &why);
	is_int(r, len, "whole header, application bytes after it untouched");
}

static void
test_v1_spec(void)
{
	const char	*ex = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
	    "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
	const char	*v6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char	*unk_long = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:"
	    "ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	char		 line[200];

	expect_ok("v1 spec example", (const uint8_t *)ex, strlen(ex), 47,
	    "192.168.0.1 56324", "192.168.0.11 443");
	is_int(strlen(v6), 104, "v1 longest TCP6 line is 104 bytes");
	expect_ok("v1 longest TCP6", (const uint8_t *)v6, strlen(v6), 104,
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff] 65535",
	    "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff] 65535");
	expect_ok("v1 UNKNOWN short form",
	    (const uint8_t *)"PROXY UNKNOWN\r\n", 15, 15, "", "");
	is_int(strlen(unk_long), 107, "v1 worst case is 107 bytes");
	expect_ok("v1 UNKNOWN worst case, 107 bytes",
	    (const uint8_t *)unk_long, 107, 107, "", "");
	expect_ok("v1 TCP4 port 0 and 65535", (const uint8_t *)
	    "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 44, 44,
	    "0.0.0.0 0", "255.255.255.255 65535");
	expect_ok("v1 TCP6 compressed and v4-embedded forms", (const uint8_t *)
	    "PROXY TCP6 ::1 ::ffff:10.0.0.1 1 2\r\n", 36, 36,
	    "[::1] 1", "[::ffff:10.0.0.1] 2");

	/* 108 bytes with the CRLF: one too many */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %092d\r\n", 0);
	is_int(strlen(line), 108, "a 108-byte line");
	expect_err_s("v1 line of 108 bytes", line, "no CRLF in the first 107");
	expect_err("v1 107 bytes without CRLF", (const uint8_t *)line, 107,
	    "no CRLF in the first 107");
	memset(line, 'A', sizeof(line));
	memcpy(line, "PROXY ", 6);
	expect_err("v1 107 bytes of letters after PROXY",
	    (const uint8_t *)line, 107, "no CRLF");
}

static void
test_v1_errors(void)
{
	static const struct {
		const char	*in;
		const char	*why;
	} t[] = {
		{ "GET / HTTP/1.1\r\n", "not a PROXY protocol header" },
		{ "PROXI", "not a PROXY protocol header" },
		{ "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY" },
		{ "PROXY\r\n", "not a PROXY protocol header" },
		{ "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol is not" },
		{ "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol is not" },
		{ "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol is not" },
		{ "PROXY UNKNOWNX\r\n", "protocol is not" },
		{ "PROXY TCP4\r\n", "protocol is not" },
		{ "PROXY TCP4 \r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR without LF" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR without LF" },
		{ "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "printable" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "destination port" },
		{ "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "destination address" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "destination address" },
		{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 ::1 ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "bad source address" },
		{ "PROXY TCP6 ::1 1.2.3.4 1 2\r\n", "bad destination address" },
		{ "PROXY TCP6 [::1] ::1 1 2\r\n", "bad source address" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad source port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n", "destination port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", "destination port" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "destination port" },
	};
	char	 name[64];
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(name, sizeof(name), "v1 bad #%zu", i);
		expect_err_s(name, t[i].in, t[i].why);
	}
	/* refused at the first wrong byte, without waiting for more */
	expect_err("v1 'X' alone is refused at once", (const uint8_t *)"X", 1,
	    "not a PROXY");
	expect_err("v1 'PROXX' refused at byte 5", (const uint8_t *)"PROXX", 5,
	    "not a PROXY");
	expect_err("v1 NUL in the line", (const uint8_t *)"PROXY \0", 7,
	    "printable");
}

/* A v2 header: ver_cmd, fam, then body[0, blen). */
static size_t
v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
    size_t blen)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen)
		memcpy(out + 16, body, blen);
	return 16 + blen;
}

static const uint8_t inet_block[12] = {
	192, 168, 0, 1,  192, 168, 0, 11,  0xdc, 0x04,  0x01, 0xbb
};

/* CRC32C by table, checked against the standard check value. */
static uint32_t
crc32c_ref(const uint8_t *p, size_t n)
{
	static uint32_t	 tab[256];
	uint32_t	 c;
	size_t		 i;
	int		 k;

	if (tab[1] == 0) {
		for (i = 0; i < 256; i++) {
			c = (uint32_t)i;
			for (k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
			tab[i] = c;
		}
	}
	c = 0xffffffff;
	for (i = 0; i < n; i++)
		c = tab[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return ~c;
}

static void
test_v2(void)
{
	uint8_t			 b[PROXYPROTO_MAX + 64], body[PROXYPROTO_MAX];
	struct proxyproto_hdr	 h;
	const uint8_t		*val;
	const char		*why;
	uint32_t		 crc;
	size_t			 n, i;
	int			 r;

	n = v2(b, 0x21, 0x11, inet_block, 12);
	expect_ok("v2 TCP over IPv4", b, n, 28, "192.168.0.1 56324",
	    "192.168.0.11 443");
	split_everywhere("v2 TCP over IPv4", b, n);

	memset(body, 0, 36);
	body[15] = 1;				/* ::1 */
	body[16] = 0x20;
	body[17] = 0x01;
	body[18] = 0x0d;
	body[19] = 0xb8;
	body[31] = 2;				/* 2001:db8::2 */
	body[32] = 0x30;
	body[33] = 0x39;			/* 12345 */
	body[35] = 80;
	n = v2(b, 0x21, 0x21, body, 36);
	expect_ok("v2 TCP over IPv6", b, n, 52, "[::1] 12345",
	    "[2001:db8::2] 80");
	split_everywhere("v2 TCP over IPv6", b, n);

	n = v2(b, 0x20, 0x00, NULL, 0);
	expect_ok("v2 LOCAL", b, n, 16, "", "");
	ok(proxyproto_decode(b, n, &h, &why) == 16 && h.local,
	    "v2 LOCAL is flagged local");
	n = v2(b, 0x20, 0x11, inet_block, 12);
	expect_ok("v2 LOCAL with an address block: block ignored", b, n, 28,
	    "", "");
	memset(body, 0xee, 40);
	n = v2(b, 0x20, 0x00, body, 40);
	expect_ok("v2 LOCAL with garbage after: skipped by length", b, n, 56,
	    "", "");
	n = v2(b, 0x21, 0x00, body, 40);
	expect_ok("v2 PROXY UNSPEC: block ignored", b, n, 56, "", "");
	n = v2(b, 0x21, 0x12, inet_block, 12);
	expect_ok("v2 UDP over IPv4: valid, not a TCP client", b, n, 28,
	    "", "");
	memset(body, 0, 216);
	n = v2(b, 0x21, 0x31, body, 216);
	expect_ok("v2 UNIX stream: valid, no address", b, n, 232, "", "");
	n = v2(b, 0x21, 0x32, body, 216);
	expect_ok("v2 UNIX datagram: valid, no address", b, n, 232, "", "");

	/* TLVs: unknown ones skipped, found by proxyproto_tlv() */
	memcpy(body, inet_block, 12);
	i = 12;
	body[i++] = 0xe0;		/* custom */
	body[i++] = 0;
	body[i++] = 3;
	memcpy(body + i, "abc", 3);
	i += 3;
	body[i++] = 0xf8;		/* future */
	body[i++] = 0;
	body[i++] = 0;
	body[i++] = PP2_TYPE_AUTHORITY;
	body[i++] = 0;
	body[i++] = 11;
	memcpy(body + i, "example.com", 11);
	i += 11;
	body[i++] = PP2_TYPE_SSL;	/* sub-TLVs are not descended into */
	body[i++] = 0;
	body[i++] = 5;
	memset(body + i, 0xff, 5);
	i += 5;
	n = v2(b, 0x21, 0x11, body, i);
	expect_ok("v2 with unknown, empty, AUTHORITY and SSL TLVs", b, n,
	    (int)n, "192.168.0.1 56324", "192.168.0.11 443");
	split_everywhere("v2 with TLVs", b, n);
	r = proxyproto_decode(b, n, &h, &why);
	ok(r > 0 && proxyproto_tlv(b, &h, PP2_TYPE_AUTHORITY, &val) == 11 &&
	    memcmp(val, "example.com", 11) == 0, "AUTHORITY TLV found");
	ok(proxyproto_tlv(b, &h, 0xf8, &val) == 0, "empty TLV found, length 0");
	ok(proxyproto_tlv(b, &h, PP2_TYPE_UNIQUE_ID, &val) == -1,
	    "absent TLV: -1");

	/* TLV bounds */
	n = v2(b, 0x21, 0x11, body, 13);
	expect_err("v2 one byte after the addresses", b, n,
	    "truncated TLV header");
	n = v2(b, 0x21, 0x11, body, 14);
	expect_err("v2 two bytes after the addresses", b, n,
	    "truncated TLV header");
	n = v2(b, 0x21, 0x11, body, 17);
	expect_err("v2 TLV value cut short", b, n, "TLV longer than");
	body[12] = 0x05;
	body[13] = 0xff;
	body[14] = 0xff;
	n = v2(b, 0x21, 0x11, body, 18);
	expect_err("v2 TLV length 65535", b, n, "TLV longer than");

	/* CRC32C */
	is_int(crc32c_ref((const uint8_t *)"123456789", 9), 0xe3069283,
	    "reference CRC32C check value");
	memcpy(body, inet_block, 12);
	body[12] = PP2_TYPE_CRC32C;
	body[13] = 0;
	body[14] = 4;
	memset(body + 15, 0, 4);
	n = v2(b, 0x21, 0x11, body, 19);
	crc = crc32c_ref(b, n);
	b[31] = (uint8_t)(crc >> 24);
	b[32] = (uint8_t)(crc >> 16);
	b[33] = (uint8_t)(crc >> 8);
	b[34] = (uint8_t)crc;
	expect_ok("v2 with a correct CRC32C", b, n, (int)n,
	    "192.168.0.1 56324", "192.168.0.11 443");
	b[20] ^= 1;
	expect_err("v2 CRC32C over a changed address", b, n, "CRC32C mismatch");
	b[20] ^= 1;
	b[34] ^= 0x80;
	expect_err("v2 CRC32C value changed", b, n, "CRC32C mismatch");
	body[14] = 3;
	n = v2(b, 0x21, 0x11, body, 18);
	expect_err("v2 CRC32C of 3 bytes", b, n, "not 4 bytes");

	/* header errors, each refused as soon as its byte arrives */
	for (i = 0; i < 12; i++) {
		char	 name[48];

		n = v2(b, 0x21, 0x11, inet_block, 12);
		b[i] ^= 0x40;
		snprintf(name, sizeof(name), "v2 signature byte %zu wrong", i);
		expect_err(name, b, i + 1, "not a PROXY");
	}
	n = v2(b, 0x11, 0x11, inet_block, 12);
	expect_err("v2 version 1", b, 13, "version is not 2");
	n = v2(b, 0x31, 0x11, inet_block, 12);
	expect_err("v2 version 3", b, n, "version is not 2");
	n = v2(b, 0x22, 0x11, inet_block, 12);
	expect_err("v2 command 2", b, 13, "command");
	n = v2(b, 0x2f, 0x11, inet_block, 12);
	expect_err("v2 command 15", b, n, "command");
	n = v2(b, 0x21, 0x41, inet_block, 12);
	expect_err("v2 family 4", b, 14, "family");
	n = v2(b, 0x21, 0x13, inet_block, 12);
	expect_err("v2 transport 3", b, 14, "family or transport");
	n = v2(b, 0x21, 0xf0, inet_block, 12);
	expect_err("v2 family 15", b, n, "family");
	n = v2(b, 0x21, 0x11, inet_block, 11);
	expect_err("v2 IPv4 block of 11 bytes", b, n, "shorter than its family");
	n = v2(b, 0x21, 0x21, body, 35);
	expect_err("v2 IPv6 block of 35 bytes", b, n, "shorter than its family");
	n = v2(b, 0x21, 0x31, body, 215);
	expect_err("v2 UNIX block of 215 bytes", b, n,
	    "shorter than its family");
	n = v2(b, 0x21, 0x11, inet_block, 0);
	expect_err("v2 PROXY IPv4 with length 0", b, n, "shorter");

	/* limits: 4096 accepted, 4097 refused from the 16 fixed bytes */
	memcpy(body, inet_block, 12);
	body[12] = PP2_TYPE_NOOP;
	body[13] = (uint8_t)((PROXYPROTO_MAX - 16 - 15) >> 8);
	body[14] = (uint8_t)(PROXYPROTO_MAX - 16 - 15);
	memset(body + 15, 0, PROXYPROTO_MAX - 16 - 15);
	n = v2(b, 0x21, 0x11, body, PROXYPROTO_MAX - 16);
	expect_ok("v2 header of exactly 4096 bytes", b, n, PROXYPROTO_MAX,
	    "192.168.0.1 56324", "192.168.0.11 443");
	n = v2(b, 0x21, 0x11, body, PROXYPROTO_MAX - 15);
	expect_err("v2 header of 4097 bytes, refused at byte 16", b, 16,
	    "longer than 4096");
	b[14] = b[15] = 0xff;
	expect_err("v2 length 65535, refused at byte 16", b, 16,
	    "longer than 4096");

	why = NULL;
	is_int(proxyproto_decode(b, 0, &h, &why), 0, "nothing yet: need more");
}

/* HAProxy 2.6.12, server ... send-proxy-v2 proxy-v2-options
 * unique-id,crc32c, unique-id-format haproxy-uid-%rt: its first two
 * connections, from 127.0.0.1 and from ::1. */
static const uint8_t haproxy_v4[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x23,
	0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01,
	0xe4, 0x1e, 0xb8, 0x0b, 0x03, 0x00, 0x04, 0x6e,
	0x27, 0xe9, 0x9b, 0x05, 0x00, 0x0d, 0x68, 0x61,
	0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x75, 0x69,
	0x64, 0x2d, 0x31,
};
static const uint8_t haproxy_v6[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x3b,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0xa0, 0x2e, 0xb8, 0x0d, 0x03, 0x00, 0x04, 0x81,
	0xb5, 0x3c, 0x17, 0x05, 0x00, 0x0d, 0x68, 0x61,
	0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x75, 0x69,
	0x64, 0x2d, 0x32,
};

static void
test_haproxy(void)
{
	struct proxyproto_hdr	 h;
	const uint8_t		*val;
	const char		*why;
	uint8_t			 b[sizeof(haproxy_v6)];

	expect_ok("HAProxy v2 IPv4", haproxy_v4, sizeof(haproxy_v4), 51,
	    "127.0.0.1 58398", "127.0.0.1 47115");
	expect_ok("HAProxy v2 IPv6", haproxy_v6, sizeof(haproxy_v6), 75,
	    "[::1] 41006", "[::1] 47117");
	ok(proxyproto_decode(haproxy_v6, sizeof(haproxy_v6), &h, &why) == 75 &&
	    proxyproto_tlv(haproxy_v6, &h, PP2_TYPE_UNIQUE_ID, &val) == 13 &&
	    memcmp(val, "haproxy-uid-2", 13) == 0,
	    "HAProxy's unique id is found");
	split_everywhere("HAProxy v2 IPv6", haproxy_v6, sizeof(haproxy_v6));
	memcpy(b, haproxy_v6, sizeof(b));
	b[sizeof(b) - 1] = '3';
	expect_err("HAProxy v2, unique id changed after the CRC", b, sizeof(b),
	    "CRC32C mismatch");
}

static void
test_split_v1(void)
{
	const char	*l4 = "PROXY TCP4 10.1.2.3 127.0.0.1 40000 8080\r\n";
	const char	*l6 = "PROXY TCP6 2001:db8::1 ::1 40000 8080\r\n";

	split_everywhere("v1 TCP4", (const uint8_t *)l4, strlen(l4));
	split_everywhere("v1 TCP6", (const uint8_t *)l6, strlen(l6));
	split_everywhere("v1 UNKNOWN", (const uint8_t *)"PROXY UNKNOWN\r\n", 15);
}

/* Encode then decode: the same addresses come back. */
static void
round_trip(int version, const char *name, struct sockaddr_storage *src,
    struct sockaddr_storage *dst, const char *want_src, const char *want_dst)
{
	uint8_t	 b[PROXYPROTO_MAX];
	char	 label[96];
	int	 n;

	n = proxyproto_encode(version, (struct sockaddr *)src,
	    (struct sockaddr *)dst, NULL, 0, b, sizeof(b));
	snprintf(label, sizeof(label), "v%d round trip %s", version, name);
	if (!ok(n > 0, "%s: encoded (%d bytes)", label, n))
		return;
	expect_ok(label, b, (size_t)n, n, want_src, want_dst);
	split_everywhere(label, b, (size_t)n);
}

static void
test_encode(void)
{
	struct sockaddr_storage	 c4 = sa4("192.168.0.1", 56324);
	struct sockaddr_storage	 s4 = sa4("192.168.0.11", 443);
	struct sockaddr_storage	 c6 = sa6("2001:db8::7", 5000);
	struct sockaddr_storage	 s6 = sa6("::1", 80);
	struct sockaddr_un	 un = { .sun_family = AF_UNIX };
	struct proxyproto_hdr	 h;
	const uint8_t		*val;
	const char		*why;
	uint8_t			 b[PROXYPROTO_MAX], id[PROXYPROTO_UNIQUE_ID_MAX + 1];
	int			 n, v;

	n = proxyproto_encode(1, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    NULL, 0, b, sizeof(b));
	ok(n == 47 && memcmp(b, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 "
	    "443\r\n", 47) == 0, "v1 encodes the spec example byte for byte");
	n = proxyproto_encode(2, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    NULL, 0, b, sizeof(b));
	ok(n == 28 && memcmp(b, sig, 12) == 0 && b[12] == 0x21 &&
	    b[13] == 0x11 && b[14] == 0 && b[15] == 12 &&
	    memcmp(b + 16, inet_block, 12) == 0,
	    "v2 encodes IPv4 byte for byte");

	for (v = 1; v <= 2; v++) {
		round_trip(v, "IPv4", &c4, &s4, "192.168.0.1 56324",
		    "192.168.0.11 443");
		round_trip(v, "IPv6", &c6, &s6, "[2001:db8::7] 5000", "[::1] 80");
		round_trip(v, "IPv4 client, IPv6 destination", &c4, &s6,
		    "[::ffff:192.168.0.1] 56324", "[::1] 80");
		round_trip(v, "IPv6 client, IPv4 destination", &c6, &s4,
		    "[2001:db8::7] 5000", "[::ffff:192.168.0.11] 443");
	}

	/* a connection of the proxy's own: LOCAL, UNKNOWN */
	n = proxyproto_encode(2, NULL, NULL, NULL, 0, b, sizeof(b));
	ok(n == 16 && b[12] == 0x20 && b[13] == 0 && b[15] == 0,
	    "v2 check connection: LOCAL, UNSPEC, no block");
	ok(proxyproto_decode(b, 16, &h, &why) == 16 && h.local &&
	    !h.has_addr, "v2 LOCAL decodes as local");
	n = proxyproto_encode(1, NULL, NULL, NULL, 0, b, sizeof(b));
	ok(n == 15 && memcmp(b, "PROXY UNKNOWN\r\n", 15) == 0,
	    "v1 check connection: PROXY UNKNOWN");
	n = proxyproto_encode(1, (struct sockaddr *)&un, (struct sockaddr *)&s4,
	    NULL, 0, b, sizeof(b));
	ok(n == 15 && memcmp(b, "PROXY UNKNOWN\r\n", 15) == 0,
	    "v1 unix client: PROXY UNKNOWN");
	n = proxyproto_encode(2, (struct sockaddr *)&un, (struct sockaddr *)&s4,
	    NULL, 0, b, sizeof(b));
	ok(n == 16 && b[12] == 0x21 && b[13] == 0x00,
	    "v2 unix client: PROXY, UNSPEC");

	/* unique id TLV */
	memset(id, 'u', sizeof(id));
	n = proxyproto_encode(2, (struct sockaddr *)&c6,
	    (struct sockaddr *)&s6, id, PROXYPROTO_UNIQUE_ID_MAX, b, sizeof(b));
	is_int(n, 16 + 36 + 3 + PROXYPROTO_UNIQUE_ID_MAX,
	    "v2 with a 128-byte unique id");
	ok(n > 0 && proxyproto_decode(b, (size_t)n, &h, &why) == n &&
	    proxyproto_tlv(b, &h, PP2_TYPE_UNIQUE_ID, &val) ==
	    PROXYPROTO_UNIQUE_ID_MAX && memcmp(val, id, 128) == 0,
	    "the unique id decodes back");
	n = proxyproto_encode(1, (struct sockaddr *)&c4,
	    (struct sockaddr *)&s4, id, 16, b, sizeof(b));
	is_int(n, 47, "v1 ignores the unique id");

	/* refusals */
	errno = 0;
	ok(proxyproto_encode(3, NULL, NULL, NULL, 0, b, sizeof(b)) == -1 &&
	    errno == EINVAL, "version 3: EINVAL");
	errno = 0;
	ok(proxyproto_encode(2, (struct sockaddr *)&c4, NULL, NULL, 0, b,
	    sizeof(b)) == -1 && errno == EINVAL, "one address NULL: EINVAL");
	errno = 0;
	ok(proxyproto_encode(2, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    id, PROXYPROTO_UNIQUE_ID_MAX + 1, b, sizeof(b)) == -1 &&
	    errno == EINVAL, "129-byte unique id: EINVAL");
	errno = 0;
	ok(proxyproto_encode(2, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    id, 0, b, sizeof(b)) == -1 && errno == EINVAL,
	    "empty unique id: EINVAL");
	errno = 0;
	ok(proxyproto_encode(2, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    NULL, 0, b, 27) == -1 && errno == EMSGSIZE,
	    "v2 into 27 bytes: EMSGSIZE");
	errno = 0;
	ok(proxyproto_encode(1, (struct sockaddr *)&c4, (struct sockaddr *)&s4,
	    NULL, 0, b, 46) == -1 && errno == EMSGSIZE,
	    "v1 into 46 bytes: EMSGSIZE");
	n = proxyproto_encode(1, (struct sockaddr *)&c6, (struct sockaddr *)&s6,
	    NULL, 0, b, sizeof(b));
	ok(n > 0 && n <= PROXYPROTO_V1_MAX, "v1 IPv6 fits in 107 bytes");
}

int
main(void)
{
	test_v1_spec();
	test_v1_errors();
	test_split_v1();
	test_v2();
	test_haproxy();
	test_encode();
	return done_testing();
}
