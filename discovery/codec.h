/*
 * codec.h - the announcement datagram, version 1 (docs/discovery-protocol.md).
 *
 * Pure: bytes in, a struct or a verdict out; a struct in, bytes out. No
 * sockets, no clocks, no state: replay, freshness and policy belong to the
 * receiver (receiver.c), which maps every outcome onto one verdict counter.
 *
 *   off size field                 off size field
 *     0   2  magic 0x5348           16   4  ttl, ms
 *     2   1  version = 1            20   4  seq
 *     3   1  type = 1 (announce)    24   8  instance id
 *     4   1  state 1 up, 2 drain,   32   8  timestamp, ms since the epoch
 *            3 leaving              40  16  address (IPv4: first 4 bytes)
 *     5   1  flags: bit 0 = IPv6    56   1  pool name length n (1-32)
 *     6   1  key id                 57   n  pool name [A-Za-z0-9._-]
 *     7   1  auth 1 hmac, 0 none    ...     TLVs: type(1) len(1) value:
 *                                       1 label, 2 maxconn u32, 3 load u8
 *                                       [+ connections u32]; >= 128 critical
 *     8   2  length (before tag)  length 32  tag (auth = 1 only)
 *    10   2  port                   tag = HMAC-SHA256(key,
 *    12   2  weight (0-256)           "shoal-announce-v1\0" realm "\0"
 *    14   2  reserved = 0             bytes[0, length))
 */
#ifndef SHOAL_CODEC_H
#define SHOAL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODEC_MAGIC		0x5348
#define CODEC_VERSION		1
#define CODEC_TYPE_ANNOUNCE	1
#define CODEC_AUTH_NONE		0
#define CODEC_AUTH_HMAC		1
#define CODEC_FLAG_IPV6		0x01
#define CODEC_MAX		512	/* largest datagram, tag included */
#define CODEC_TAG_LEN		32	/* HMAC-SHA256 */
#define CODEC_HDR_LEN		57	/* fixed part, up to the pool name */
#define CODEC_MIN_BODY		(CODEC_HDR_LEN + 1)	/* 1-byte pool name */
#define CODEC_POOL_MAX		32
#define CODEC_LABEL_MAX		63
#define CODEC_WEIGHT_MAX	256	/* as a server's weight */
#define CODEC_KEY_MIN		16	/* key bytes accepted */
#define CODEC_KEY_MAX		64
#define CODEC_REALM_MAX		63
#define CODEC_TLV_LABEL		1
#define CODEC_TLV_MAXCONN	2
#define CODEC_TLV_LOAD		3	/* load 0-100 [, connections u32] */
#define CODEC_LOAD_MAX		100
#define CODEC_TLV_CRITICAL	128	/* types >= this must be understood */
#define CODEC_CONTEXT		"shoal-announce-v1"	/* MAC context, + NUL */

/*
 * The verdict of one datagram; the receiver keeps one counter each. The
 * codec itself returns only ok, malformed, unknown_key and bad_mac.
 */
enum disc_verdict {
	DISC_OK = 0,		/* accepted (may change nothing: a repeat) */
	DISC_MALFORMED,		/* size, header or field rule */
	DISC_UNKNOWN_KEY,	/* key id not in the key file */
	DISC_BAD_MAC,		/* tag mismatch, or unsigned when not allowed */
	DISC_STALE,		/* timestamp outside max_skew */
	DISC_REPLAY,		/* seq or timestamp not newer */
	DISC_POLICY,		/* pool, allow, source, own address, static */
	DISC_CAP,		/* max_discovered or a resource limit */
	DISC_NVERDICTS
};

enum codec_state {
	CODEC_UP = 1,
	CODEC_DRAINING = 2,
	CODEC_LEAVING = 3,
};

/* One decoded (or to be encoded) announcement, host byte order. */
struct codec_msg {
	uint8_t		 state;		/* enum codec_state */
	uint8_t		 key_id;	/* 1-255 signed, 0 unsigned */
	uint8_t		 auth;		/* CODEC_AUTH_* */
	bool		 ipv6;		/* addr holds 16 bytes, else 4 */
	uint8_t		 addr[16];	/* network order, IPv4 in [0, 4) */
	uint16_t	 port;		/* not 0 */
	uint16_t	 weight;	/* 0-256 */
	uint32_t	 ttl_ms;	/* as sent; the receiver clamps it */
	uint32_t	 seq;		/* +1 per datagram of one instance */
	uint64_t	 instance;	/* random per announcer start */
	uint64_t	 timestamp_ms;	/* sender's wall clock */
	char		 pool[CODEC_POOL_MAX + 1];	/* NUL terminated */
	char		 label[CODEC_LABEL_MAX + 1];	/* "" = no label TLV */
	bool		 has_maxconn;	/* maxconn TLV present */
	uint32_t	 maxconn;
	bool		 has_load;	/* load TLV present */
	uint8_t		 load;		/* 0-100: the server's own load */
	bool		 has_conns;	/* load TLV carries a connection count */
	uint32_t	 conns;		/* established connections it reports */
};

/* A signing key: its id and bytes. */
struct codec_key {
	uint8_t		 id;		/* 1-255 */
	uint8_t		 len;		/* CODEC_KEY_MIN..CODEC_KEY_MAX */
	uint8_t		 key[CODEC_KEY_MAX];
};

/*
 * Decode and verify one datagram of n bytes, checks in the order of
 * docs/discovery-protocol.md: size; magic, version, type, auth, key id,
 * length; the tag (constant time); field rules. keys[0, nkeys) are the
 * accepted keys (any id), realm the MAC realm; unsigned datagrams are
 * accepted only when allow_unsigned. Returns DISC_OK with *msg filled, or
 * DISC_MALFORMED, DISC_UNKNOWN_KEY or DISC_BAD_MAC with a static reason in
 * *why (never NULL then); *msg is then unspecified.
 */
enum disc_verdict codec_decode(const uint8_t *buf, size_t n,
		    const struct codec_key *keys, size_t nkeys,
		    const char *realm, bool allow_unsigned,
		    struct codec_msg *msg, const char **why);

/*
 * Encode msg into buf (bufsz bytes, CODEC_MAX is always enough), signed
 * with key under realm, or unsigned when key is NULL (msg->key_id and
 * msg->auth are ignored: they follow from key). Returns the datagram
 * length, or -1 with errno EINVAL (msg breaks a field rule; *why says
 * which, if why is not NULL) or EMSGSIZE.
 */
int		 codec_encode(const struct codec_msg *msg,
		    const struct codec_key *key, const char *realm,
		    uint8_t *buf, size_t bufsz, const char **why);

/*
 * The tag of bytes[0, len): HMAC-SHA256(key, CODEC_CONTEXT "\0" realm
 * "\0" bytes). 0, or -1 if OpenSSL failed.
 */
int		 codec_tag(const struct codec_key *key, const char *realm,
		    const uint8_t *bytes, size_t len,
		    uint8_t tag[CODEC_TAG_LEN]);

/* "ok", "malformed", ... (static); "?" for an unknown value. */
const char	*codec_verdict_name(int);

/* "up", "draining", "leaving" (static); "?" otherwise. */
const char	*codec_state_name(int);

/* Whether s (len bytes) is a valid pool name: 1-32 of [A-Za-z0-9._-]. */
bool		 codec_pool_valid(const char *s, size_t len);

#endif /* SHOAL_CODEC_H */
