/*
 * proxyproto.c - decode and encode PROXY protocol headers (v1 and v2).
 *
 * The decoder is written for hostile input: it looks only at buf[0, n),
 * refuses a wrong prefix as soon as it sees it (so a peer cannot hold a
 * connection open by sending garbage slowly), and never reads a field
 * before its bounds are checked.
 */
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net.h"
#include "proxyproto.h"

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char v1_sig[] = "PROXY ";		/* 6 bytes */

#define V2_VERSION	0x20
#define V2_CMD_LOCAL	0x00
#define V2_CMD_PROXY	0x01
#define V2_AF_UNSPEC	0x0
#define V2_AF_INET	0x1
#define V2_AF_INET6	0x2
#define V2_AF_UNIX	0x3
#define V2_TP_STREAM	0x1
#define V2_TP_DGRAM	0x2
#define V2_LEN_INET	12
#define V2_LEN_INET6	36
#define V2_LEN_UNIX	216

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static int
fail(const char **why, const char *reason)
{
	*why = reason;
	return -1;
}

/* CRC32C (Castagnoli, RFC 4960 appendix B), bit by bit: headers are
 * small and the TLV is rare; skip = [skip, skip + 4) reads as zeros. */
static uint32_t
crc32c(const uint8_t *p, size_t n, size_t skip)
{
	uint32_t	 crc = 0xffffffff;
	size_t		 i;
	int		 k;

	for (i = 0; i < n; i++) {
		crc ^= (i >= skip && i < skip + 4) ? 0 : p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78 & (0u - (crc & 1)));
	}
	return ~crc;
}

/* ---- version 1 ---------------------------------------------------- */

/* A decimal port: 1-5 digits, no leading zero, at most 65535. */
static bool
v1_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long	 v = 0;
	size_t		 i;

	if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* One address of family af from s[0, len) into ss (port set later). */
static bool
v1_addr(int af, const char *s, size_t len, struct sockaddr_storage *ss)
{
	char			 tmp[INET6_ADDRSTRLEN];
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		sin->sin_family = AF_INET;
		/* glibc refuses leading zeros ("010.1.1.1"), as the spec */
		return inet_pton(AF_INET, tmp, &sin->sin_addr) == 1;
	}
	sin6->sin6_family = AF_INET6;
	return inet_pton(AF_INET6, tmp, &sin6->sin6_addr) == 1;
}

/* Split the next field of line[*pos, end) up to a space (or to end for
 * the last one). Returns its length, the field at line + start. */
static size_t
v1_field(const char *line, size_t end, size_t *pos, size_t *start,
    bool last)
{
	size_t	 i;

	*start = *pos;
	for (i = *pos; i < end && line[i] != ' '; i++)
		;
	if (!last && i == end)
		return 0;		/* a separator was required */
	if (last && i != end)
		return 0;		/* nothing may follow the last field */
	*pos = i + (last ? 0 : 1);
	return i - *start;
}

/* The complete line line[0, end) (CRLF excluded; "PROXY " checked). */
static int
v1_line(const char *line, size_t end, struct proxyproto_hdr *h,
    const char **why)
{
	size_t		 pos = 6, start, len;
	uint16_t	 sport, dport;
	int		 af;

	memset(h, 0, sizeof(*h));
	h->version = 1;
	if (end - pos >= 7 && memcmp(line + pos, "UNKNOWN", 7) == 0 &&
	    (end - pos == 7 || line[pos + 7] == ' '))
		return 0;		/* the rest of the line is ignored */
	if (end - pos >= 5 && memcmp(line + pos, "TCP4 ", 5) == 0)
		af = AF_INET;
	else if (end - pos >= 5 && memcmp(line + pos, "TCP6 ", 5) == 0)
		af = AF_INET6;
	else
		return fail(why, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	pos += 5;
	len = v1_field(line, end, &pos, &start, false);
	if (!v1_addr(af, line + start, len, &h->src))
		return fail(why, "v1: bad source address");
	len = v1_field(line, end, &pos, &start, false);
	if (!v1_addr(af, line + start, len, &h->dst))
		return fail(why, "v1: bad destination address");
	len = v1_field(line, end, &pos, &start, false);
	if (!v1_port(line + start, len, &sport))
		return fail(why, "v1: bad source port");
	len = v1_field(line, end, &pos, &start, true);
	if (!v1_port(line + start, len, &dport))
		return fail(why, "v1: bad destination port");
	net_set_port(&h->src, sport);
	net_set_port(&h->dst, dport);
	h->has_addr = true;
	return 0;
}

static int
v1_decode(const uint8_t *buf, size_t n, struct proxyproto_hdr *h,
    const char **why)
{
	size_t	 i, lim;

	lim = n < sizeof(v1_sig) - 1 ? n : sizeof(v1_sig) - 1;
	if (memcmp(buf, v1_sig, lim) != 0)
		return fail(why, "not a PROXY protocol header");
	lim = n < PROXYPROTO_V1_MAX ? n : PROXYPROTO_V1_MAX;
	for (i = 0; i < lim; i++) {
		if (buf[i] == '\n')
			return fail(why, "v1: LF without CR");
		if (buf[i] == '\r') {
			if (i + 1 >= PROXYPROTO_V1_MAX)
				break;		/* the LF would be byte 108 */
			if (i + 1 == n)
				return 0;
			if (buf[i + 1] != '\n')
				return fail(why, "v1: CR without LF");
			if (i < sizeof(v1_sig) - 1)
				return fail(why, "not a PROXY protocol header");
			if (v1_line((const char *)buf, i, h, why) == -1)
				return -1;
			return (int)i + 2;
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return fail(why, "v1: byte outside printable ASCII");
	}
	if (n >= PROXYPROTO_V1_MAX)
		return fail(why, "v1: no CRLF in the first 107 bytes");
	return 0;
}

/* ---- version 2 ---------------------------------------------------- */

/* The TLVs in buf[off, total): every one must fit; CRC32C must match. */
static int
v2_tlvs(const uint8_t *buf, size_t off, size_t total, const char **why)
{
	size_t		 vlen;
	uint32_t	 want;

	while (off < total) {
		if (total - off < 3)
			return fail(why, "v2: truncated TLV header");
		vlen = get16(buf + off + 1);
		if (total - off - 3 < vlen)
			return fail(why, "v2: TLV longer than the header");
		if (buf[off] == PP2_TYPE_CRC32C) {
			if (vlen != 4)
				return fail(why, "v2: CRC32C TLV is not 4 bytes");
			want = (uint32_t)buf[off + 3] << 24 |
			    (uint32_t)buf[off + 4] << 16 |
			    (uint32_t)buf[off + 5] << 8 | buf[off + 6];
			if (crc32c(buf, total, off + 3) != want)
				return fail(why, "v2: CRC32C mismatch");
		}
		off += 3 + vlen;
	}
	return 0;
}

static int
v2_decode(const uint8_t *buf, size_t n, struct proxyproto_hdr *h,
    const char **why)
{
	struct sockaddr_in	*s4 = (struct sockaddr_in *)&h->src;
	struct sockaddr_in	*d4 = (struct sockaddr_in *)&h->dst;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)&h->src;
	struct sockaddr_in6	*d6 = (struct sockaddr_in6 *)&h->dst;
	const uint8_t		*a;
	size_t			 lim, total, alen;
	uint8_t			 cmd, fam, tp;

	lim = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
	if (memcmp(buf, v2_sig, lim) != 0)
		return fail(why, "not a PROXY protocol header");
	if (n > 12 && (buf[12] & 0xf0) != V2_VERSION)
		return fail(why, "v2: version is not 2");
	if (n > 12 && (buf[12] & 0x0f) > V2_CMD_PROXY)
		return fail(why, "v2: command is not LOCAL or PROXY");
	if (n > 13 && ((buf[13] >> 4) > V2_AF_UNIX ||
	    (buf[13] & 0x0f) > V2_TP_DGRAM))
		return fail(why, "v2: unknown address family or transport");
	if (n < PROXYPROTO_V2_FIXED)
		return 0;
	total = PROXYPROTO_V2_FIXED + get16(buf + 14);
	if (total > PROXYPROTO_MAX)
		return fail(why, "v2: header longer than 4096 bytes");
	if (n < total)
		return 0;

	memset(h, 0, sizeof(*h));
	h->version = 2;
	cmd = buf[12] & 0x0f;
	fam = buf[13] >> 4;
	tp = buf[13] & 0x0f;
	if (cmd == V2_CMD_LOCAL) {
		h->local = true;	/* the block is ignored, as specified */
		return (int)total;
	}
	switch (fam) {
	case V2_AF_INET:
		alen = V2_LEN_INET;
		break;
	case V2_AF_INET6:
		alen = V2_LEN_INET6;
		break;
	case V2_AF_UNIX:
		alen = V2_LEN_UNIX;
		break;
	default:
		return (int)total;	/* UNSPEC: the block is ignored */
	}
	if (total - PROXYPROTO_V2_FIXED < alen)
		return fail(why, "v2: address block shorter than its family");
	if (v2_tlvs(buf, PROXYPROTO_V2_FIXED + alen, total, why) == -1)
		return -1;
	if (tp != V2_TP_STREAM || fam == V2_AF_UNIX)
		return (int)total;	/* valid, but not a TCP client */
	a = buf + PROXYPROTO_V2_FIXED;
	if (fam == V2_AF_INET) {
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a, 4);
		memcpy(&d4->sin_addr, a + 4, 4);
		memcpy(&s4->sin_port, a + 8, 2);
		memcpy(&d4->sin_port, a + 10, 2);
	} else {
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a, 16);
		memcpy(&d6->sin6_addr, a + 16, 16);
		memcpy(&s6->sin6_port, a + 32, 2);
		memcpy(&d6->sin6_port, a + 34, 2);
	}
	h->has_addr = true;
	h->tlv_off = PROXYPROTO_V2_FIXED + alen;
	h->tlv_len = total - h->tlv_off;
	return (int)total;
}

int
proxyproto_decode(const uint8_t *buf, size_t n, struct proxyproto_hdr *h,
    const char **why)
{
	if (n == 0)
		return 0;
	if (buf[0] == v2_sig[0])
		return v2_decode(buf, n, h, why);
	if (buf[0] == (uint8_t)v1_sig[0])
		return v1_decode(buf, n, h, why);
	return fail(why, "not a PROXY protocol header");
}

int
proxyproto_tlv(const uint8_t *buf, const struct proxyproto_hdr *h,
    uint8_t type, const uint8_t **value)
{
	size_t	 off = h->tlv_off, end = h->tlv_off + h->tlv_len, vlen;

	/* decode() checked every bound; this walk trusts them */
	while (h->tlv_len > 0 && off + 3 <= end) {
		vlen = get16(buf + off + 1);
		if (buf[off] == type) {
			*value = buf + off + 3;
			return (int)vlen;
		}
		off += 3 + vlen;
	}
	return -1;
}

/* ---- encoding ----------------------------------------------------- */

/* The 16 address bytes of sa as IPv6 (IPv4 mapped) and its port. */
static void
as_v6(const struct sockaddr *sa, uint8_t addr[16], uint16_t *port)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;

	if (sa->sa_family == AF_INET6) {
		memcpy(addr, &sin6->sin6_addr, 16);
		*port = ntohs(sin6->sin6_port);
		return;
	}
	memset(addr, 0, 10);
	addr[10] = addr[11] = 0xff;
	memcpy(addr + 12, &sin->sin_addr, 4);
	*port = ntohs(sin->sin_port);
}

static bool
is_inet(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET || sa->sa_family == AF_INET6;
}

static int
v1_encode(const struct sockaddr *src, const struct sockaddr *dst,
    uint8_t *buf, size_t bufsz)
{
	const struct sockaddr_in	*s4 = (const struct sockaddr_in *)src;
	const struct sockaddr_in	*d4 = (const struct sockaddr_in *)dst;
	char				 sa[INET6_ADDRSTRLEN];
	char				 da[INET6_ADDRSTRLEN];
	char				 line[PROXYPROTO_V1_MAX + 1];
	uint8_t				 s6[16], d6[16];
	uint16_t			 sp, dp;
	int				 n;

	if (src == NULL || !is_inet(src) || !is_inet(dst))
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	else if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof(sa));
		inet_ntop(AF_INET, &d4->sin_addr, da, sizeof(da));
		n = snprintf(line, sizeof(line), "PROXY TCP4 %s %s %u %u\r\n",
		    sa, da, ntohs(s4->sin_port), ntohs(d4->sin_port));
	} else {
		as_v6(src, s6, &sp);
		as_v6(dst, d6, &dp);
		inet_ntop(AF_INET6, s6, sa, sizeof(sa));
		inet_ntop(AF_INET6, d6, da, sizeof(da));
		n = snprintf(line, sizeof(line), "PROXY TCP6 %s %s %u %u\r\n",
		    sa, da, sp, dp);
	}
	if (n < 0 || (size_t)n > PROXYPROTO_V1_MAX || (size_t)n > bufsz) {
		errno = EMSGSIZE;
		return -1;
	}
	memcpy(buf, line, (size_t)n);
	return n;
}

static int
v2_encode(const struct sockaddr *src, const struct sockaddr *dst,
    const void *unique_id, size_t idlen, uint8_t *buf, size_t bufsz)
{
	const struct sockaddr_in	*s4 = (const struct sockaddr_in *)src;
	const struct sockaddr_in	*d4 = (const struct sockaddr_in *)dst;
	uint8_t				 a[V2_LEN_INET6];
	uint16_t			 sp, dp;
	size_t				 alen = 0, total;
	uint8_t				 cmd = V2_CMD_PROXY, fam;

	if (src == NULL) {
		cmd = V2_CMD_LOCAL;
		fam = 0x00;
		unique_id = NULL;
	} else if (!is_inet(src) || !is_inet(dst)) {
		fam = 0x00;
		unique_id = NULL;
	} else if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		fam = V2_AF_INET << 4 | V2_TP_STREAM;
		alen = V2_LEN_INET;
		memcpy(a, &s4->sin_addr, 4);
		memcpy(a + 4, &d4->sin_addr, 4);
		memcpy(a + 8, &s4->sin_port, 2);
		memcpy(a + 10, &d4->sin_port, 2);
	} else {
		fam = V2_AF_INET6 << 4 | V2_TP_STREAM;
		alen = V2_LEN_INET6;
		as_v6(src, a, &sp);
		as_v6(dst, a + 16, &dp);
		put16(a + 32, sp);
		put16(a + 34, dp);
	}
	total = PROXYPROTO_V2_FIXED + alen + (unique_id ? 3 + idlen : 0);
	if (total > bufsz) {
		errno = EMSGSIZE;
		return -1;
	}
	memcpy(buf, v2_sig, sizeof(v2_sig));
	buf[12] = V2_VERSION | cmd;
	buf[13] = fam;
	put16(buf + 14, (uint16_t)(total - PROXYPROTO_V2_FIXED));
	memcpy(buf + PROXYPROTO_V2_FIXED, a, alen);
	if (unique_id != NULL) {
		buf[PROXYPROTO_V2_FIXED + alen] = PP2_TYPE_UNIQUE_ID;
		put16(buf + PROXYPROTO_V2_FIXED + alen + 1, (uint16_t)idlen);
		memcpy(buf + PROXYPROTO_V2_FIXED + alen + 3, unique_id, idlen);
	}
	return (int)total;
}

int
proxyproto_encode(int version, const struct sockaddr *src,
    const struct sockaddr *dst, const void *unique_id, size_t idlen,
    uint8_t *buf, size_t bufsz)
{
	if ((src == NULL) != (dst == NULL) || (version != 1 && version != 2) ||
	    (unique_id != NULL &&
	    (idlen == 0 || idlen > PROXYPROTO_UNIQUE_ID_MAX))) {
		errno = EINVAL;
		return -1;
	}
	if (version == 1)
		return v1_encode(src, dst, buf, bufsz);
	return v2_encode(src, dst, unique_id, idlen, buf, bufsz);
}
