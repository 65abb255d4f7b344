/*
 * test_codec.c - the announcement codec and key files: the pinned test
 * vectors (docs/discovery-protocol.md), a table of malformed datagrams with
 * the exact verdict each must get, encoder rules, and key file parsing
 * (format and the 0600 rule).
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "keys.h"
#include "t.h"

/* The test vector: key 00 01 .. 1f (id 1), realm "ait-lab4". */
static const uint8_t vector[] = {
	0x53, 0x48, 0x01, 0x01, 0x01, 0x00, 0x01, 0x01,	/* magic..auth */
	0x00, 0x49, 0x0b, 0xb8, 0x00, 0x02, 0x00, 0x00,	/* len port w rsv */
	0x00, 0x00, 0x0d, 0xac, 0x00, 0x00, 0x00, 0x2a,	/* ttl seq */
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,	/* instance */
	0x00, 0x00, 0x01, 0x9b, 0x76, 0xda, 0xa8, 0x00,	/* timestamp */
	0xc0, 0xa8, 0x2a, 0x0b, 0x00, 0x00, 0x00, 0x00,	/* address */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x03, 0x61, 0x70, 0x70,				/* "app" */
	0x01, 0x05, 0x77, 0x65, 0x62, 0x2d, 0x31,	/* label "web-1" */
	0x02, 0x04, 0x00, 0x00, 0x00, 0x64,		/* maxconn 100 */
	/* tag */
	0xfd, 0xfc, 0xed, 0x42, 0x40, 0x60, 0x51, 0xb4,
	0x68, 0x0c, 0x69, 0x55, 0x9d, 0x37, 0xd3, 0x5f,
	0xf0, 0xe6, 0x98, 0x9b, 0x8a, 0x15, 0x04, 0xde,
	0x18, 0x2b, 0x4e, 0xf0, 0x89, 0xad, 0xa9, 0xc8,
};
#define VECTOR_BODY	73	/* bytes before the tag */

/* The load vector: the same fields plus load 73 and 12 connections. */
static const uint8_t vector_load[] = {
	0x53, 0x48, 0x01, 0x01, 0x01, 0x00, 0x01, 0x01,	/* magic..auth */
	0x00, 0x50, 0x0b, 0xb8, 0x00, 0x02, 0x00, 0x00,	/* len port w rsv */
	0x00, 0x00, 0x0d, 0xac, 0x00, 0x00, 0x00, 0x2a,	/* ttl seq */
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,	/* instance */
	0x00, 0x00, 0x01, 0x9b, 0x76, 0xda, 0xa8, 0x00,	/* timestamp */
	0xc0, 0xa8, 0x2a, 0x0b, 0x00, 0x00, 0x00, 0x00,	/* address */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x03, 0x61, 0x70, 0x70,				/* "app" */
	0x01, 0x05, 0x77, 0x65, 0x62, 0x2d, 0x31,	/* label "web-1" */
	0x02, 0x04, 0x00, 0x00, 0x00, 0x64,		/* maxconn 100 */
	0x03, 0x05, 0x49, 0x00, 0x00, 0x00, 0x0c,	/* load 73, conns 12 */
	/* tag */
	0x62, 0xd5, 0x16, 0x40, 0x79, 0xbe, 0xc6, 0x42,
	0x2d, 0xdf, 0xac, 0x88, 0xf2, 0x4e, 0x32, 0xe0,
	0xc0, 0x77, 0x87, 0xf8, 0x11, 0x6f, 0x48, 0x9d,
	0x81, 0xe4, 0x78, 0x27, 0x7a, 0xa1, 0x0c, 0xe7,
};
#define VECTOR_LOAD_BODY 80
#define REALM		"ait-lab4"

static struct codec_key	 key1;		/* the vector's key */
static struct codec_key	 key1_other;	/* id 1, other bytes */

static void
vector_msg(struct codec_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->state = CODEC_UP;
	m->addr[0] = 192;
	m->addr[1] = 168;
	m->addr[2] = 42;
	m->addr[3] = 11;
	m->port = 3000;
	m->weight = 2;
	m->ttl_ms = 3500;
	m->seq = 42;
	m->instance = 0x0123456789abcdefULL;
	m->timestamp_ms = 1767225600000ULL;	/* 2026-01-01T00:00:00Z */
	snprintf(m->pool, sizeof(m->pool), "app");
	snprintf(m->label, sizeof(m->label), "web-1");
	m->has_maxconn = true;
	m->maxconn = 100;
}

static void
test_vector(void)
{
	struct codec_msg	 m, d;
	uint8_t			 buf[CODEC_MAX], tag[CODEC_TAG_LEN];
	const char		*why = NULL;
	int			 n;

	vector_msg(&m);
	n = codec_encode(&m, &key1, REALM, buf, sizeof(buf), &why);
	is_int(n, sizeof(vector), "vector: encoded length");
	ok(n == (int)sizeof(vector) && memcmp(buf, vector, sizeof(vector)) == 0,
	    "vector: encoded bytes equal the pinned bytes");
	ok(codec_tag(&key1, REALM, vector, VECTOR_BODY, tag) == 0 &&
	    memcmp(tag, vector + VECTOR_BODY, CODEC_TAG_LEN) == 0,
	    "vector: tag equals the pinned tag");

	is_int(codec_decode(vector, sizeof(vector), &key1, 1, REALM, false, &d,
	    &why), DISC_OK, "vector: decodes");
	is_int(d.state, CODEC_UP, "vector: state");
	ok(!d.ipv6 && memcmp(d.addr, m.addr, 4) == 0, "vector: address");
	is_int(d.port, 3000, "vector: port");
	is_int(d.weight, 2, "vector: weight");
	is_int(d.ttl_ms, 3500, "vector: ttl");
	is_int(d.seq, 42, "vector: seq");
	ok(d.instance == 0x0123456789abcdefULL, "vector: instance");
	ok(d.timestamp_ms == 1767225600000ULL, "vector: timestamp");
	ok(strcmp(d.pool, "app") == 0, "vector: pool");
	ok(strcmp(d.label, "web-1") == 0, "vector: label");
	ok(d.has_maxconn && d.maxconn == 100, "vector: maxconn");
	is_int(d.key_id, 1, "vector: key id");
	is_int(d.auth, CODEC_AUTH_HMAC, "vector: auth");

	/* Same bytes, other realm or key: the tag no longer matches. */
	is_int(codec_decode(vector, sizeof(vector), &key1, 1, "shoal", false,
	    &d, &why), DISC_BAD_MAC, "vector: wrong realm -> bad_mac");
	is_int(codec_decode(vector, sizeof(vector), &key1_other, 1, REALM,
	    false, &d, &why), DISC_BAD_MAC, "vector: wrong key -> bad_mac");
}

static void
test_vector_load(void)
{
	struct codec_msg	 m, d;
	uint8_t			 buf[CODEC_MAX], tag[CODEC_TAG_LEN];
	const char		*why = NULL;
	int			 n;

	vector_msg(&m);
	m.has_load = true;
	m.load = 73;
	m.has_conns = true;
	m.conns = 12;
	n = codec_encode(&m, &key1, REALM, buf, sizeof(buf), &why);
	is_int(n, sizeof(vector_load), "load vector: encoded length");
	ok(n == (int)sizeof(vector_load) &&
	    memcmp(buf, vector_load, sizeof(vector_load)) == 0,
	    "load vector: encoded bytes equal the pinned bytes");
	ok(codec_tag(&key1, REALM, vector_load, VECTOR_LOAD_BODY, tag) == 0 &&
	    memcmp(tag, vector_load + VECTOR_LOAD_BODY, CODEC_TAG_LEN) == 0,
	    "load vector: tag equals the pinned tag");
	is_int(codec_decode(vector_load, sizeof(vector_load), &key1, 1, REALM,
	    false, &d, &why), DISC_OK, "load vector: decodes");
	ok(d.has_load && d.load == 73 && d.has_conns && d.conns == 12,
	    "load vector: load 73, 12 connections");
	ok(d.has_maxconn && d.maxconn == 100 && strcmp(d.label, "web-1") == 0,
	    "load vector: the other TLVs as before");
	is_int(codec_decode(vector, sizeof(vector), &key1, 1, REALM, false,
	    &d, &why), DISC_OK, "the first vector (no load TLV) decodes");
	ok(!d.has_load && !d.has_conns, "  and carries no load report");

	/* The TLV's type is below 128: a receiver that does not know it
	 * skips it; the tag covers it like every other byte. */
	ok(CODEC_TLV_LOAD < CODEC_TLV_CRITICAL, "load TLV is not critical");
	memcpy(buf, vector_load, sizeof(vector_load));
	buf[VECTOR_LOAD_BODY - 5] ^= 0x01;	/* load 73 -> 72 */
	is_int(codec_decode(buf, sizeof(vector_load), &key1, 1, REALM, false,
	    &d, &why), DISC_BAD_MAC, "load vector: a changed load -> bad_mac");

	vector_msg(&m);
	m.has_load = true;
	m.load = 0;
	n = codec_encode(&m, NULL, REALM, buf, sizeof(buf), &why);
	ok(n == VECTOR_BODY + 3 && buf[VECTOR_BODY] == CODEC_TLV_LOAD &&
	    buf[VECTOR_BODY + 1] == 1 && buf[VECTOR_BODY + 2] == 0,
	    "load without connections: a 1-byte TLV");
	ok(codec_decode(buf, (size_t)n, &key1, 1, REALM, true, &d, &why) ==
	    DISC_OK && d.has_load && d.load == 0 && !d.has_conns,
	    "  round trip");
}

/* ------------------------------------------------------------------ */
/* The table of broken datagrams. */

enum sign {
	RESIGN,		/* recompute the tag after the edit (a field rule) */
	KEEP_TAG,	/* keep the vector's tag */
	NO_TAG,		/* unsigned: no tag at all */
};

struct bad {
	const char		*name;
	void			(*edit)(uint8_t *b, size_t *n, long arg);
	long			 arg;
	enum sign		 sign;
	bool			 allow_unsigned;
	enum disc_verdict	 want;
};

static void
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Set the length field to the body length. */
static void
fix_len(uint8_t *b, size_t n)
{
	put16(b + 8, (unsigned)n);
}

static void e_none(uint8_t *b, size_t *n, long a) { (void)b; (void)n; (void)a; }
static void e_byte(uint8_t *b, size_t *n, long a)
{	/* a = offset << 8 | value */
	(void)n;
	b[a >> 8] = (uint8_t)a;
}
static void e_flip(uint8_t *b, size_t *n, long a)
{	/* a = offset << 3 | bit */
	(void)n;
	b[a >> 3] ^= (uint8_t)(1 << (a & 7));
}
static void e_u16(uint8_t *b, size_t *n, long a)
{	/* a = offset << 16 | value */
	(void)n;
	put16(b + (a >> 16), (unsigned)(a & 0xffff));
}
static void e_setlen(uint8_t *b, size_t *n, long a)
{
	(void)n;
	put16(b + 8, (unsigned)a);
}
/* Replace the address: a = 4 for IPv4 a.b.c.d packed in the low bytes
 * via the table below, else an index into v6addrs. */
static const uint8_t v6addrs[][16] = {
	{ 0 },						/* :: */
	{ 0xff, 0x02, [15] = 1 },			/* ff02::1 */
	{ [10] = 0xff, [11] = 0xff, 1, 2, 3, 4 },	/* ::ffff:1.2.3.4 */
	{ 0xfe, 0x80, [15] = 1 },			/* fe80::1 */
	{ 0x20, 0x01, 0x0d, 0xb8, [15] = 1 },		/* 2001:db8::1 */
	{ [15] = 1 },					/* ::1 */
};
static void e_v6(uint8_t *b, size_t *n, long a)
{
	(void)n;
	b[5] |= CODEC_FLAG_IPV6;
	memcpy(b + 40, v6addrs[a], 16);
}
static void e_v4(uint8_t *b, size_t *n, long a)
{	/* a = the address, host order */
	(void)n;
	b[40] = (uint8_t)(a >> 24);
	b[41] = (uint8_t)(a >> 16);
	b[42] = (uint8_t)(a >> 8);
	b[43] = (uint8_t)a;
}
/* Rebuild everything after the fixed header from a template string:
 * the pool length byte, pool, TLVs. a indexes tails[]. */
#define T(s)	{ sizeof(s) - 1, s }
static const struct {
	size_t		 len;
	const char	*bytes;
} tails[] = {
	T("\x00"),						/* 0: pool len 0 */
	T("\x21" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),		/* 1: len 33 */
	T("\x05" "app"),					/* 2: past length */
	T("\x03" "a/b"),					/* 3: charset */
	T("\x03" "a b"),					/* 4: blank */
	T("\x03" "a\xc3\xa9"),					/* 5: non-ASCII */
	T("\x03" "app\x01"),					/* 6: 1-byte TLV */
	T("\x03" "app\x01\x05x"),				/* 7: TLV past */
	T("\x03" "app\x01\x02\x01x"),				/* 8: control */
	T("\x03" "app\x01\x02xy\x01\x02zz"),			/* 9: label x2 */
	T("\x03" "app\x02\x03\x00\x00\x01"),			/* 10: mc len 3 */
	T("\x03" "app\x02\x04\x00\x00\x00\x01"
	    "\x02\x04\x00\x00\x00\x02"),			/* 11: mc x2 */
	T("\x03" "app\x80\x00"),				/* 12: crit 128 */
	T("\x03" "app\xff\x01z"),				/* 13: crit 255 */
	T("\x03" "app\x04\x01z"),				/* 14: type 4 ok */
	T("\x03" "app\x7f\x00"),				/* 15: 127 ok */
	T("\x03" "app\x01\x00"),				/* 16: empty lbl */
	T("\x20" "abcdefghijklmnopqrstuvwxyzABCDEF" "\x00\x00"),	/* 17 */
	T("\x03" "app\x02\x04\xff\xff\xff\xff"),		/* 18: mc max */
	T("\x03" "A.-"),					/* 19: ok */
	T("\x02" "a\x00"),					/* 20: NUL */
	T("\x03" "app\x03\x01\x49"),				/* 21: load 73 */
	T("\x03" "app\x03\x01\x65"),				/* 22: load 101 */
	T("\x03" "app\x03\x01\x64"),				/* 23: load 100 */
	T("\x03" "app\x03\x00"),				/* 24: load len 0 */
	T("\x03" "app\x03\x02\x01\x02"),			/* 25: len 2 */
	T("\x03" "app\x03\x05\x10\x00\x00\x00"),		/* 26: past */
	T("\x03" "app\x03\x01\x01\x03\x01\x02"),		/* 27: twice */
	T("\x03" "app\x03\x05\x00\xff\xff\xff\xff"),		/* 28: conns */
	T("\x03" "app\x03\x04\x10\x00\x00\x00"),		/* 29: len 4 */
	T("\x03" "app\x03\x06\x10\x00\x00\x00\x00\x00"),	/* 30: len 6 */
	T("\x03" "app\x03\x05\xff\x00\x00\x00\x01"),		/* 31: 255 */
};
#undef T
static void e_tail(uint8_t *b, size_t *n, long a)
{
	memcpy(b + CODEC_HDR_LEN - 1, tails[a].bytes, tails[a].len);
	*n = CODEC_HDR_LEN - 1 + tails[a].len;
	fix_len(b, *n);
}
/* Pool "app" and a label of a bytes. */
static void e_label(uint8_t *b, size_t *n, long a)
{
	memcpy(b + CODEC_HDR_LEN - 1, "\x03" "app", 4);
	b[CODEC_HDR_LEN + 3] = CODEC_TLV_LABEL;
	b[CODEC_HDR_LEN + 4] = (uint8_t)a;
	memset(b + CODEC_HDR_LEN + 5, 'x', (size_t)a);
	*n = CODEC_HDR_LEN + 5 + (size_t)a;
	fix_len(b, *n);
}
static void e_unsigned(uint8_t *b, size_t *n, long a)
{	/* auth 0; a = key id */
	b[6] = (uint8_t)a;
	b[7] = CODEC_AUTH_NONE;
	fix_len(b, *n);
}

static void e_unsigned_port0(uint8_t *b, size_t *n, long a)
{
	e_unsigned(b, n, a);
	put16(b + 10, 0);
}

#define AT(off, v)	((long)(off) << 8 | (v))
#define BIT(off, b)	((long)(off) << 3 | (b))
#define U16(off, v)	((long)(off) << 16 | (v))

static const struct bad bads[] = {
	/* header */
	{ "magic 0x5349", e_byte, AT(1, 0x49), KEEP_TAG, false,
	  DISC_MALFORMED },
	{ "magic 0x0000", e_u16, U16(0, 0), KEEP_TAG, false, DISC_MALFORMED },
	{ "version 0", e_byte, AT(2, 0), KEEP_TAG, false, DISC_MALFORMED },
	{ "version 2", e_byte, AT(2, 2), KEEP_TAG, false, DISC_MALFORMED },
	{ "version 2, re-signed", e_byte, AT(2, 2), RESIGN, false,
	  DISC_MALFORMED },
	{ "type 0", e_byte, AT(3, 0), KEEP_TAG, false, DISC_MALFORMED },
	{ "type 2 (reserved)", e_byte, AT(3, 2), RESIGN, false,
	  DISC_MALFORMED },
	{ "type 255", e_byte, AT(3, 255), KEEP_TAG, false, DISC_MALFORMED },
	{ "auth 2", e_byte, AT(7, 2), KEEP_TAG, false, DISC_MALFORMED },
	{ "auth 255", e_byte, AT(7, 255), RESIGN, false, DISC_MALFORMED },
	{ "key id 0", e_byte, AT(6, 0), KEEP_TAG, false, DISC_UNKNOWN_KEY },
	{ "key id 2 (not in the key file)", e_byte, AT(6, 2), KEEP_TAG, false,
	  DISC_UNKNOWN_KEY },
	{ "key id 255", e_byte, AT(6, 255), RESIGN, false, DISC_UNKNOWN_KEY },
	{ "length 0", e_setlen, 0, KEEP_TAG, false, DISC_MALFORMED },
	{ "length one short", e_setlen, VECTOR_BODY - 1, KEEP_TAG, false,
	  DISC_MALFORMED },
	{ "length one long", e_setlen, VECTOR_BODY + 1, KEEP_TAG, false,
	  DISC_MALFORMED },
	{ "length 0xffff", e_setlen, 0xffff, KEEP_TAG, false, DISC_MALFORMED },
	{ "key id 9", e_u16, U16(6, 0x0901), KEEP_TAG, false,
	  DISC_UNKNOWN_KEY },

	/* the tag covers everything before it */
	{ "bit flipped in the tag", e_flip, BIT(VECTOR_BODY + 5, 3), KEEP_TAG,
	  false, DISC_BAD_MAC },
	{ "bit flipped in state (header)", e_flip, BIT(4, 1), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in port", e_flip, BIT(11, 0), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in seq", e_flip, BIT(23, 0), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in address", e_flip, BIT(43, 7), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in pool", e_flip, BIT(58, 0), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in label", e_flip, BIT(64, 1), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in reserved", e_flip, BIT(15, 0), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "bit flipped in flags", e_flip, BIT(5, 0), KEEP_TAG, false,
	  DISC_BAD_MAC },
	{ "unsigned when auth = none is not set", e_unsigned, 0, NO_TAG, false,
	  DISC_BAD_MAC },

	/* field rules, with a valid tag */
	{ "reserved 0x0001", e_u16, U16(14, 1), RESIGN, false, DISC_MALFORMED },
	{ "reserved 0x8000", e_u16, U16(14, 0x8000), RESIGN, false,
	  DISC_MALFORMED },
	{ "flags bit 1", e_byte, AT(5, 2), RESIGN, false, DISC_MALFORMED },
	{ "flags bit 7", e_byte, AT(5, 0x80), RESIGN, false, DISC_MALFORMED },
	{ "state 0", e_byte, AT(4, 0), RESIGN, false, DISC_MALFORMED },
	{ "state 4", e_byte, AT(4, 4), RESIGN, false, DISC_MALFORMED },
	{ "state 2 (draining) ok", e_byte, AT(4, 2), RESIGN, false, DISC_OK },
	{ "state 3 (leaving) ok", e_byte, AT(4, 3), RESIGN, false, DISC_OK },
	{ "port 0", e_u16, U16(10, 0), RESIGN, false, DISC_MALFORMED },
	{ "port 65535 ok", e_u16, U16(10, 65535), RESIGN, false, DISC_OK },
	{ "weight 257", e_u16, U16(12, 257), RESIGN, false, DISC_MALFORMED },
	{ "weight 256 ok", e_u16, U16(12, 256), RESIGN, false, DISC_OK },
	{ "weight 0 ok", e_u16, U16(12, 0), RESIGN, false, DISC_OK },
	{ "ttl 0 ok (clamped by the receiver)", e_u16, U16(18, 0), RESIGN,
	  false, DISC_OK },
	{ "IPv4 padding not zero", e_byte, AT(55, 1), RESIGN, false,
	  DISC_MALFORMED },
	{ "IPv4 0.0.0.0", e_v4, 0, RESIGN, false, DISC_MALFORMED },
	{ "IPv4 224.0.0.1 multicast", e_v4, 0xe0000001L, RESIGN, false,
	  DISC_MALFORMED },
	{ "IPv4 239.255.76.66 multicast", e_v4, 0xefff4c42L, RESIGN, false,
	  DISC_MALFORMED },
	{ "IPv4 255.255.255.255 broadcast", e_v4, 0xffffffffL, RESIGN, false,
	  DISC_MALFORMED },
	{ "IPv4 127.0.0.1 ok (policy decides)", e_v4, 0x7f000001L, RESIGN,
	  false, DISC_OK },
	{ "IPv6 ::", e_v6, 0, RESIGN, false, DISC_MALFORMED },
	{ "IPv6 ff02::1 multicast", e_v6, 1, RESIGN, false, DISC_MALFORMED },
	{ "IPv6 ::ffff:1.2.3.4 mapped", e_v6, 2, RESIGN, false,
	  DISC_MALFORMED },
	{ "IPv6 fe80::1 link-local", e_v6, 3, RESIGN, false, DISC_MALFORMED },
	{ "IPv6 2001:db8::1 ok", e_v6, 4, RESIGN, false, DISC_OK },
	{ "IPv6 ::1 ok (policy decides)", e_v6, 5, RESIGN, false, DISC_OK },
	{ "pool length 0", e_tail, 0, RESIGN, false, DISC_MALFORMED },
	{ "pool length 33", e_tail, 1, RESIGN, false, DISC_MALFORMED },
	{ "pool runs past length", e_tail, 2, RESIGN, false, DISC_MALFORMED },
	{ "pool with '/'", e_tail, 3, RESIGN, false, DISC_MALFORMED },
	{ "pool with a blank", e_tail, 4, RESIGN, false, DISC_MALFORMED },
	{ "pool not ASCII", e_tail, 5, RESIGN, false, DISC_MALFORMED },
	{ "pool with NUL", e_tail, 20, RESIGN, false, DISC_MALFORMED },
	{ "pool 'A.-' ok", e_tail, 19, RESIGN, false, DISC_OK },
	{ "pool of 32 + unknown TLV 0 ok", e_tail, 17, RESIGN, false,
	  DISC_OK },
	{ "TLV header truncated", e_tail, 6, RESIGN, false, DISC_MALFORMED },
	{ "TLV value past length", e_tail, 7, RESIGN, false, DISC_MALFORMED },
	{ "label with a control byte", e_tail, 8, RESIGN, false,
	  DISC_MALFORMED },
	{ "label twice", e_tail, 9, RESIGN, false, DISC_MALFORMED },
	{ "label of 64 bytes", e_label, 64, RESIGN, false, DISC_MALFORMED },
	{ "label of 255 bytes", e_label, 255, RESIGN, false, DISC_MALFORMED },
	{ "label of 63 bytes ok", e_label, 63, RESIGN, false, DISC_OK },
	{ "maxconn 0xffffffff ok", e_tail, 18, RESIGN, false, DISC_OK },
	{ "empty label ok", e_tail, 16, RESIGN, false, DISC_OK },
	{ "maxconn of 3 bytes", e_tail, 10, RESIGN, false, DISC_MALFORMED },
	{ "maxconn twice", e_tail, 11, RESIGN, false, DISC_MALFORMED },
	{ "unknown critical TLV 128", e_tail, 12, RESIGN, false,
	  DISC_MALFORMED },
	{ "unknown critical TLV 255", e_tail, 13, RESIGN, false,
	  DISC_MALFORMED },
	{ "unknown TLV 4 skipped", e_tail, 14, RESIGN, false, DISC_OK },
	{ "load 73 ok", e_tail, 21, RESIGN, false, DISC_OK },
	{ "load 100 ok", e_tail, 23, RESIGN, false, DISC_OK },
	{ "load 0 + connections 0xffffffff ok", e_tail, 28, RESIGN, false,
	  DISC_OK },
	{ "load 101", e_tail, 22, RESIGN, false, DISC_MALFORMED },
	{ "load 255 with connections", e_tail, 31, RESIGN, false,
	  DISC_MALFORMED },
	{ "load TLV of 0 bytes", e_tail, 24, RESIGN, false, DISC_MALFORMED },
	{ "load TLV of 2 bytes", e_tail, 25, RESIGN, false, DISC_MALFORMED },
	{ "load TLV of 4 bytes", e_tail, 29, RESIGN, false, DISC_MALFORMED },
	{ "load TLV of 6 bytes", e_tail, 30, RESIGN, false, DISC_MALFORMED },
	{ "load TLV past length", e_tail, 26, RESIGN, false, DISC_MALFORMED },
	{ "load twice", e_tail, 27, RESIGN, false, DISC_MALFORMED },
	{ "unknown TLV 127 skipped", e_tail, 15, RESIGN, false, DISC_OK },

	/* unsigned datagrams, auth = none configured */
	{ "unsigned ok with auth = none", e_unsigned, 0, NO_TAG, true,
	  DISC_OK },
	{ "unsigned with a key id", e_unsigned, 1, NO_TAG, true,
	  DISC_MALFORMED },
	{ "unsigned with a tag behind", e_unsigned, 0, KEEP_TAG, true,
	  DISC_MALFORMED },
	{ "unsigned, port 0 (field rule)", e_unsigned_port0, 0, NO_TAG, true,
	  DISC_MALFORMED },
	{ "signed, tag missing", e_none, 0, NO_TAG, true, DISC_MALFORMED },
	{ "signed still checked with auth = none", e_none, 0, KEEP_TAG, true,
	  DISC_OK },
	{ "signed, bad tag, auth = none", e_flip, BIT(VECTOR_BODY, 0),
	  KEEP_TAG, true, DISC_BAD_MAC },
};

static void
test_bad_table(void)
{
	struct codec_msg	 m;
	uint8_t			 b[CODEC_MAX + 64];
	size_t			 i, n;
	const char		*why;
	enum disc_verdict	 v;

	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *t = &bads[i];

		memset(b, 0, sizeof(b));
		memcpy(b, vector, sizeof(vector));
		n = VECTOR_BODY;
		t->edit(b, &n, t->arg);
		if (t->edit == e_flip && (t->arg >> 3) >= VECTOR_BODY)
			n = VECTOR_BODY;	/* the flip hit the tag */
		switch (t->sign) {
		case RESIGN:
			codec_tag(&key1, REALM, b, n, b + n);
			n += CODEC_TAG_LEN;
			break;
		case KEEP_TAG:
			memcpy(b + n, vector + VECTOR_BODY, CODEC_TAG_LEN);
			if (t->edit == e_flip && (t->arg >> 3) >= VECTOR_BODY)
				b[t->arg >> 3] ^= (uint8_t)(1 << (t->arg & 7));
			n += CODEC_TAG_LEN;
			break;
		case NO_TAG:
			break;
		}
		why = NULL;
		v = codec_decode(b, n, &key1, 1, REALM, t->allow_unsigned, &m,
		    &why);
		ok(v == t->want && (v == DISC_OK || why != NULL),
		    "%s -> %s (got %s: %s)", t->name,
		    codec_verdict_name(t->want), codec_verdict_name(v),
		    v == DISC_OK ? "-" : why);
	}
}

static void
test_sizes(void)
{
	struct codec_msg	 m;
	uint8_t			 b[CODEC_MAX + 2];
	const char		*why;
	size_t			 n;

	memset(b, 0, sizeof(b));
	is_int(codec_decode(b, 0, &key1, 1, REALM, false, &m, &why),
	    DISC_MALFORMED, "empty datagram -> malformed");
	for (n = 1; n < CODEC_MIN_BODY; n++)
		if (codec_decode(vector, n, &key1, 1, REALM, true, &m, &why) !=
		    DISC_MALFORMED)
			break;
	is_int(n, CODEC_MIN_BODY, "every prefix shorter than the header -> "
	    "malformed");
	for (n = CODEC_MIN_BODY; n < sizeof(vector); n++)
		if (codec_decode(vector, n, &key1, 1, REALM, false, &m, &why) !=
		    DISC_MALFORMED)
			break;
	is_int(n, sizeof(vector), "every truncation of the vector -> "
	    "malformed");
	memset(b, 0, sizeof(b));
	memcpy(b, vector, sizeof(vector));
	is_int(codec_decode(b, sizeof(vector) + 1, &key1, 1, REALM, false, &m,
	    &why), DISC_MALFORMED, "one trailing byte -> malformed");
	is_int(codec_decode(b, CODEC_MAX, &key1, 1, REALM, false, &m, &why),
	    DISC_MALFORMED, "512 bytes, length says 73 -> malformed");
	is_int(codec_decode(b, CODEC_MAX + 1, &key1, 1, REALM, false, &m, &why),
	    DISC_MALFORMED, "513 bytes (oversized) -> malformed");
	ok(strcmp(why, "oversized datagram") == 0, "oversized: reason '%s'",
	    why);
	is_int(codec_decode(vector, sizeof(vector), NULL, 0, REALM, true, &m,
	    &why), DISC_UNKNOWN_KEY, "signed, receiver without keys -> "
	    "unknown_key");
}

static void
test_encode(void)
{
	struct codec_msg	 m, d;
	uint8_t			 buf[CODEC_MAX];
	const char		*why;
	int			 n;

	vector_msg(&m);
	m.ipv6 = true;
	memcpy(m.addr, v6addrs[4], 16);
	m.state = CODEC_DRAINING;
	m.label[0] = '\0';
	m.has_maxconn = false;
	n = codec_encode(&m, &key1, REALM, buf, sizeof(buf), &why);
	ok(n == CODEC_HDR_LEN + 3 + CODEC_TAG_LEN, "IPv6, no TLV: %d bytes",
	    n);
	ok(n > 0 && codec_decode(buf, (size_t)n, &key1, 1, REALM, false, &d,
	    &why) == DISC_OK && d.ipv6 && memcmp(d.addr, v6addrs[4], 16) == 0 &&
	    d.state == CODEC_DRAINING && d.label[0] == '\0' && !d.has_maxconn,
	    "IPv6 draining round trip");

	n = codec_encode(&m, NULL, REALM, buf, sizeof(buf), &why);
	ok(n == CODEC_HDR_LEN + 3 && buf[7] == CODEC_AUTH_NONE && buf[6] == 0,
	    "unsigned encoding: no tag, auth 0, key id 0");
	is_int(codec_decode(buf, (size_t)n, &key1, 1, REALM, true, &d, &why),
	    DISC_OK, "unsigned round trip");

	vector_msg(&m);
	m.addr[7] = 9;		/* junk after an IPv4 address: ignored */
	n = codec_encode(&m, &key1, REALM, buf, sizeof(buf), &why);
	ok(n == (int)sizeof(vector) && memcmp(buf, vector, sizeof(vector)) == 0,
	    "IPv4 padding is zeroed on encode");

#define ENC_FAILS(field_stmt, name) do {				\
	vector_msg(&m);							\
	field_stmt;							\
	errno = 0;							\
	why = NULL;							\
	n = codec_encode(&m, &key1, REALM, buf, sizeof(buf), &why);	\
	ok(n == -1 && errno == EINVAL && why != NULL,			\
	    "encode refuses %s (%s)", name, why ? why : "-");		\
} while (0)
	ENC_FAILS(m.port = 0, "port 0");
	ENC_FAILS(m.weight = 257, "weight 257");
	ENC_FAILS(m.state = 0, "state 0");
	ENC_FAILS(m.pool[0] = '\0', "an empty pool");
	ENC_FAILS(snprintf(m.pool, sizeof(m.pool), "a/b"), "pool a/b");
	ENC_FAILS(m.label[0] = '\n', "a control byte in the label");
	ENC_FAILS(memset(m.addr, 0, 16), "0.0.0.0");
	ENC_FAILS(m.addr[0] = 224, "multicast");
	ENC_FAILS((m.ipv6 = true, memcpy(m.addr, v6addrs[3], 16)),
	    "link-local IPv6");
	ENC_FAILS((m.has_load = true, m.load = 101), "load 101");
	ENC_FAILS((m.has_conns = true, m.conns = 5),
	    "a connection count without a load");
#undef ENC_FAILS

	vector_msg(&m);
	errno = 0;
	n = codec_encode(&m, &key1, REALM, buf, 50, &why);
	ok(n == -1 && errno == EMSGSIZE, "encode: buffer too small -> "
	    "EMSGSIZE");

	ok(strcmp(codec_verdict_name(DISC_BAD_MAC), "bad_mac") == 0 &&
	    strcmp(codec_verdict_name(DISC_CAP), "cap") == 0 &&
	    strcmp(codec_verdict_name(99), "?") == 0, "verdict names");
	ok(strcmp(codec_state_name(CODEC_LEAVING), "leaving") == 0,
	    "state names");
}

/* ------------------------------------------------------------------ */
/* Key files. */

static char	 dir[] = "/tmp/shoal-test-keys-XXXXXX";

static const char *
keyfile(const char *name, const char *text, mode_t mode)
{
	static char	 path[256];
	FILE		*f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	if ((f = fopen(path, "w")) == NULL)
		return path;
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

#define K32	"000102030405060708090a0b0c0d0e0f" \
		"101112131415161718191a1b1c1d1e1f"

static void
key_bad(const char *text, mode_t mode, const char *want)
{
	struct codec_key	 keys[KEYS_MAX];
	char			 err[KEYS_ERR_MAX];
	const char		*path;
	size_t			 n = 99;

	path = keyfile("k", text, mode);
	ok(keys_load(path, keys, KEYS_MAX, &n, err) == -1 && n == 0 &&
	    strstr(err, want) != NULL, "key file refused: %s (%s)", want, err);
}

static void
test_keys(void)
{
	struct codec_key	 keys[KEYS_MAX];
	char			 err[KEYS_ERR_MAX], path[300];
	const char		*p;
	size_t			 n;

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	p = keyfile("good", "# discovery keys\n\n1 " K32 "\n"
	    "  7\tAABBCCDDEEFF00112233445566778899   # old key\n"
	    "255 " K32 K32 "\r\n", 0600);
	ok(keys_load(p, keys, KEYS_MAX, &n, err) == 0,
	    "good key file loads%s%s", n ? "" : ": ", n ? "" : err);
	is_int(n, 3, "three keys");
	ok(keys[0].id == 1 && keys[0].len == 32 &&
	    memcmp(keys[0].key, key1.key, 32) == 0, "key 1: 32 bytes 00..1f");
	ok(keys[1].id == 7 && keys[1].len == 16 && keys[1].key[0] == 0xaa &&
	    keys[1].key[15] == 0x99, "key 7: 16 bytes, uppercase hex, comment");
	ok(keys[2].id == 255 && keys[2].len == 64, "key 255: 64 bytes, CRLF");
	ok(keys_find(keys, n, 7) == &keys[1] && keys_find(keys, n, 2) == NULL,
	    "keys_find");
	p = keyfile("ro", "1 " K32, 0400);
	ok(keys_load(p, keys, KEYS_MAX, &n, err) == 0 && n == 1,
	    "mode 0400, no final newline: loads");

	key_bad("1 " K32 "\n", 0640, "mode 0640 is too open");
	key_bad("1 " K32 "\n", 0604, "chmod 600");
	key_bad("1 " K32 "\n", 0620, "too open");
	key_bad("1 " K32 "\n", 0601, "too open");
	key_bad("", 0600, "no key in key file");
	key_bad("# only a comment\n", 0600, "no key in key file");
	key_bad("0 " K32 "\n", 0600, ":1: key id must be a number 1-255");
	key_bad("256 " K32 "\n", 0600, "key id must be");
	key_bad("x " K32 "\n", 0600, "key id must be");
	key_bad("-1 " K32 "\n", 0600, "key id must be");
	key_bad("1\n", 0600, ":1: expected 'ID HEXKEY'");
	key_bad("1 " K32 " extra\n", 0600, "expected 'ID HEXKEY'");
	key_bad("1 0011\n", 0600, "key must be 16-64 bytes");
	key_bad("1 " K32 "0\n", 0600, "key must be 16-64 bytes");
	key_bad("1 " K32 K32 "00\n", 0600, "key must be 16-64 bytes");
	key_bad("1 " "zz0102030405060708090a0b0c0d0e0f\n", 0600,
	    "not hexadecimal");
	key_bad("1 " K32 "\n#\n1 " K32 "\n", 0600, ":3: duplicate key id 1");

	snprintf(path, sizeof(path), "%s/missing", dir);
	ok(keys_load(path, keys, KEYS_MAX, &n, err) == -1 &&
	    strstr(err, "cannot open") != NULL, "missing file: %s", err);
	ok(keys_load(dir, keys, KEYS_MAX, &n, err) == -1 &&
	    strstr(err, "not a regular file") != NULL, "directory: %s", err);

	unlink(keyfile("k", "", 0600));
	unlink(keyfile("good", "", 0600));
	unlink(keyfile("ro", "", 0600));
	rmdir(dir);
}

int
main(void)
{
	size_t	 i;

	key1.id = 1;
	key1.len = 32;
	for (i = 0; i < 32; i++)
		key1.key[i] = (uint8_t)i;
	key1_other = key1;
	key1_other.key[31] ^= 1;

	test_vector();
	test_vector_load();
	test_bad_table();
	test_sizes();
	test_encode();
	test_keys();
	return done_testing();
}
