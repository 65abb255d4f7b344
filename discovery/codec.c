/*
 * codec.c - encode, decode and authenticate announcement datagrams.
 *
 * The decoder is written for hostile input: every read is bounds-checked
 * against the datagram length before it happens, checks run cheapest
 * first, and nothing after the header is looked at before the tag matched.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "codec.h"
#include "name.h"

/* Field offsets, see codec.h. */
#define OFF_MAGIC	0
#define OFF_VERSION	2
#define OFF_TYPE	3
#define OFF_STATE	4
#define OFF_FLAGS	5
#define OFF_KEYID	6
#define OFF_AUTH	7
#define OFF_LENGTH	8
#define OFF_PORT	10
#define OFF_WEIGHT	12
#define OFF_RESERVED	14
#define OFF_TTL		16
#define OFF_SEQ		20
#define OFF_INSTANCE	24
#define OFF_TIMESTAMP	32
#define OFF_ADDR	40
#define OFF_POOLLEN	56
#define OFF_POOL	57

static EVP_MAC		*hmac;		/* fetched once, never freed */
static pthread_once_t	 hmac_once = PTHREAD_ONCE_INIT;

static void
hmac_fetch(void)
{
	hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

int
codec_tag(const struct codec_key *key, const char *realm,
    const uint8_t *bytes, size_t len, uint8_t tag[CODEC_TAG_LEN])
{
	static const char	 ctx_str[] = CODEC_CONTEXT;	/* + its NUL */
	EVP_MAC_CTX		*ctx;
	OSSL_PARAM		 params[2];
	char			 digest[] = "SHA256";
	size_t			 outlen = 0;
	int			 rc = -1;

	if (pthread_once(&hmac_once, hmac_fetch) != 0 || hmac == NULL)
		return -1;
	if ((ctx = EVP_MAC_CTX_new(hmac)) == NULL)
		return -1;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(ctx, key->key, key->len, params) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)ctx_str,
	    sizeof(ctx_str)) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)realm,
	    strlen(realm) + 1) != 1 ||
	    EVP_MAC_update(ctx, bytes, len) != 1 ||
	    EVP_MAC_final(ctx, tag, &outlen, CODEC_TAG_LEN) != 1 ||
	    outlen != CODEC_TAG_LEN)
		goto out;
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	return rc;
}

bool
codec_pool_valid(const char *s, size_t len)
{
	return len >= 1 && len <= CODEC_POOL_MAX && name_chars_valid(s, len);
}

static bool
label_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len > CODEC_LABEL_MAX)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/*
 * The address rules: not unspecified, multicast or broadcast; IPv4 with
 * zero padding; no IPv4-mapped or link-local IPv6 (a server address must
 * be usable without a scope, and one address has one spelling). NULL if
 * fine, else the reason.
 */
static const char *
addr_rule(const uint8_t *a, bool ipv6)
{
	static const uint8_t	 zero[16];
	static const uint8_t	 mapped[12] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (!ipv6) {
		if (memcmp(a + 4, zero, 12) != 0)
			return "IPv4 address padding not zero";
		if (memcmp(a, zero, 4) == 0)
			return "unspecified address";
		if ((a[0] & 0xf0) == 0xe0)
			return "multicast address";
		if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
			return "broadcast address";
		return NULL;
	}
	if (memcmp(a, zero, 16) == 0)
		return "unspecified address";
	if (a[0] == 0xff)
		return "multicast address";
	if (memcmp(a, mapped, 12) == 0)
		return "IPv4-mapped IPv6 address (send the IPv4 form)";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local IPv6 address";
	return NULL;
}

static const struct codec_key *
key_find(const struct codec_key *keys, size_t nkeys, uint8_t id)
{
	size_t	 i;

	if (id == 0)
		return NULL;	/* never a signing key */
	for (i = 0; i < nkeys; i++)
		if (keys[i].id == id)
			return &keys[i];
	return NULL;
}

/* Field rules on bytes[0, len) whose header already passed. */
static enum disc_verdict
decode_fields(const uint8_t *b, size_t len, struct codec_msg *m,
    const char **why)
{
	size_t		 pos, plen;
	uint8_t		 t, l;
	bool		 seen_label = false, seen_maxconn = false;
	bool		 seen_load = false;

	if (get16(b + OFF_RESERVED) != 0) {
		*why = "reserved field not zero";
		return DISC_MALFORMED;
	}
	if ((b[OFF_FLAGS] & ~CODEC_FLAG_IPV6) != 0) {
		*why = "unknown flag bits set";
		return DISC_MALFORMED;
	}
	m->state = b[OFF_STATE];
	if (m->state < CODEC_UP || m->state > CODEC_LEAVING) {
		*why = "bad state";
		return DISC_MALFORMED;
	}
	m->port = get16(b + OFF_PORT);
	if (m->port == 0) {
		*why = "port 0";
		return DISC_MALFORMED;
	}
	m->weight = get16(b + OFF_WEIGHT);
	if (m->weight > CODEC_WEIGHT_MAX) {
		*why = "weight above 256";
		return DISC_MALFORMED;
	}
	m->ttl_ms = get32(b + OFF_TTL);
	m->seq = get32(b + OFF_SEQ);
	m->instance = get64(b + OFF_INSTANCE);
	m->timestamp_ms = get64(b + OFF_TIMESTAMP);
	m->ipv6 = (b[OFF_FLAGS] & CODEC_FLAG_IPV6) != 0;
	memcpy(m->addr, b + OFF_ADDR, 16);
	if ((*why = addr_rule(m->addr, m->ipv6)) != NULL)
		return DISC_MALFORMED;

	plen = b[OFF_POOLLEN];
	if (plen < 1 || plen > CODEC_POOL_MAX) {
		*why = "pool name length not 1-32";
		return DISC_MALFORMED;
	}
	if (OFF_POOL + plen > len) {
		*why = "pool name runs past length";
		return DISC_MALFORMED;
	}
	if (!codec_pool_valid((const char *)b + OFF_POOL, plen)) {
		*why = "pool name outside [A-Za-z0-9._-]";
		return DISC_MALFORMED;
	}
	memcpy(m->pool, b + OFF_POOL, plen);
	m->pool[plen] = '\0';

	m->label[0] = '\0';
	m->has_maxconn = false;
	m->maxconn = 0;
	m->has_load = m->has_conns = false;
	m->load = 0;
	m->conns = 0;
	for (pos = OFF_POOL + plen; pos < len; pos += 2 + (size_t)l) {
		if (len - pos < 2) {
			*why = "truncated TLV header";
			return DISC_MALFORMED;
		}
		t = b[pos];
		l = b[pos + 1];
		if (len - pos - 2 < l) {
			*why = "TLV runs past length";
			return DISC_MALFORMED;
		}
		switch (t) {
		case CODEC_TLV_LABEL:
			if (seen_label) {
				*why = "label TLV twice";
				return DISC_MALFORMED;
			}
			seen_label = true;
			if (!label_valid((const char *)b + pos + 2, l)) {
				*why = "label longer than 63 bytes or not "
				    "printable ASCII";
				return DISC_MALFORMED;
			}
			memcpy(m->label, b + pos + 2, l);
			m->label[l] = '\0';
			break;
		case CODEC_TLV_MAXCONN:
			if (seen_maxconn) {
				*why = "maxconn TLV twice";
				return DISC_MALFORMED;
			}
			seen_maxconn = true;
			if (l != 4) {
				*why = "maxconn TLV length not 4";
				return DISC_MALFORMED;
			}
			m->has_maxconn = true;
			m->maxconn = get32(b + pos + 2);
			break;
		case CODEC_TLV_LOAD:
			if (seen_load) {
				*why = "load TLV twice";
				return DISC_MALFORMED;
			}
			seen_load = true;
			if (l != 1 && l != 5) {
				*why = "load TLV length not 1 or 5";
				return DISC_MALFORMED;
			}
			if (b[pos + 2] > CODEC_LOAD_MAX) {
				*why = "load above 100";
				return DISC_MALFORMED;
			}
			m->has_load = true;
			m->load = b[pos + 2];
			if (l == 5) {
				m->has_conns = true;
				m->conns = get32(b + pos + 3);
			}
			break;
		default:
			if (t >= CODEC_TLV_CRITICAL) {
				*why = "unknown critical TLV";
				return DISC_MALFORMED;
			}
			break;		/* unknown, not critical: skipped */
		}
	}
	return DISC_OK;
}

enum disc_verdict
codec_decode(const uint8_t *b, size_t n, const struct codec_key *keys,
    size_t nkeys, const char *realm, bool allow_unsigned,
    struct codec_msg *m, const char **why)
{
	const struct codec_key	*key = NULL;
	uint8_t			 tag[CODEC_TAG_LEN];
	size_t			 len;

	/* Size: the header must be there; nothing larger than the max. */
	if (n > CODEC_MAX) {
		*why = "oversized datagram";
		return DISC_MALFORMED;
	}
	if (n < CODEC_MIN_BODY) {
		*why = "truncated datagram";
		return DISC_MALFORMED;
	}
	if (get16(b + OFF_MAGIC) != CODEC_MAGIC) {
		*why = "bad magic";
		return DISC_MALFORMED;
	}
	if (b[OFF_VERSION] != CODEC_VERSION) {
		*why = "unknown version";
		return DISC_MALFORMED;
	}
	if (b[OFF_TYPE] != CODEC_TYPE_ANNOUNCE) {
		*why = "reserved type";
		return DISC_MALFORMED;
	}
	switch (b[OFF_AUTH]) {
	case CODEC_AUTH_HMAC:
		if ((key = key_find(keys, nkeys, b[OFF_KEYID])) == NULL) {
			*why = "unknown key id";
			return DISC_UNKNOWN_KEY;
		}
		len = get16(b + OFF_LENGTH);
		if (len + CODEC_TAG_LEN != n) {
			*why = "length does not match datagram size";
			return DISC_MALFORMED;
		}
		break;
	case CODEC_AUTH_NONE:
		if (!allow_unsigned) {
			*why = "unsigned (auth = none is not configured)";
			return DISC_BAD_MAC;
		}
		if (b[OFF_KEYID] != 0) {
			*why = "key id set on an unsigned datagram";
			return DISC_MALFORMED;
		}
		len = get16(b + OFF_LENGTH);
		if (len != n) {
			*why = "length does not match datagram size";
			return DISC_MALFORMED;
		}
		break;
	default:
		*why = "unknown auth";
		return DISC_MALFORMED;
	}
	if (len < CODEC_MIN_BODY) {
		*why = "length shorter than the header";
		return DISC_MALFORMED;
	}
	if (key != NULL) {
		if (codec_tag(key, realm, b, len, tag) == -1) {
			*why = "cannot compute HMAC";
			return DISC_BAD_MAC;
		}
		if (CRYPTO_memcmp(tag, b + len, CODEC_TAG_LEN) != 0) {
			*why = "tag mismatch";
			return DISC_BAD_MAC;
		}
	}
	memset(m, 0, sizeof(*m));
	m->key_id = b[OFF_KEYID];
	m->auth = b[OFF_AUTH];
	return decode_fields(b, len, m, why);
}

int
codec_encode(const struct codec_msg *m, const struct codec_key *key,
    const char *realm, uint8_t *buf, size_t bufsz, const char **why)
{
	uint8_t		 addr[16];
	size_t		 plen, llen, len, total;
	const char	*w = NULL;

	/* An IPv4 address is its first 4 bytes: the rest is padding. */
	memcpy(addr, m->addr, sizeof(addr));
	if (!m->ipv6)
		memset(addr + 4, 0, sizeof(addr) - 4);
	plen = strnlen(m->pool, sizeof(m->pool));
	llen = strnlen(m->label, sizeof(m->label));
	if (!codec_pool_valid(m->pool, plen))
		w = "pool name must be 1-32 characters from A-Z a-z 0-9 . _ -";
	else if (!label_valid(m->label, llen) || llen == sizeof(m->label))
		w = "label must be at most 63 printable ASCII characters";
	else if (m->state < CODEC_UP || m->state > CODEC_LEAVING)
		w = "bad state";
	else if (m->port == 0)
		w = "port 0";
	else if (m->weight > CODEC_WEIGHT_MAX)
		w = "weight above 256";
	else if (m->has_load && m->load > CODEC_LOAD_MAX)
		w = "load above 100";
	else if (m->has_conns && !m->has_load)
		w = "a connection count needs a load";
	else if (key != NULL && (key->id == 0 || key->len < CODEC_KEY_MIN ||
	    key->len > CODEC_KEY_MAX))
		w = "bad key";
	else if (strlen(realm) > CODEC_REALM_MAX)
		w = "realm longer than 63 bytes";
	else
		w = addr_rule(addr, m->ipv6);
	if (w != NULL) {
		if (why != NULL)
			*why = w;
		errno = EINVAL;
		return -1;
	}
	len = OFF_POOL + plen + (llen > 0 ? 2 + llen : 0) +
	    (m->has_maxconn ? 6 : 0) +
	    (m->has_load ? (m->has_conns ? 7 : 3) : 0);
	total = len + (key != NULL ? CODEC_TAG_LEN : 0);
	if (total > CODEC_MAX || total > bufsz) {
		if (why != NULL)
			*why = "datagram too large";
		errno = EMSGSIZE;
		return -1;
	}
	memset(buf, 0, total);
	put16(buf + OFF_MAGIC, CODEC_MAGIC);
	buf[OFF_VERSION] = CODEC_VERSION;
	buf[OFF_TYPE] = CODEC_TYPE_ANNOUNCE;
	buf[OFF_STATE] = m->state;
	buf[OFF_FLAGS] = m->ipv6 ? CODEC_FLAG_IPV6 : 0;
	buf[OFF_KEYID] = key != NULL ? key->id : 0;
	buf[OFF_AUTH] = key != NULL ? CODEC_AUTH_HMAC : CODEC_AUTH_NONE;
	put16(buf + OFF_LENGTH, (uint16_t)len);
	put16(buf + OFF_PORT, m->port);
	put16(buf + OFF_WEIGHT, m->weight);
	put32(buf + OFF_TTL, m->ttl_ms);
	put32(buf + OFF_SEQ, m->seq);
	put64(buf + OFF_INSTANCE, m->instance);
	put64(buf + OFF_TIMESTAMP, m->timestamp_ms);
	memcpy(buf + OFF_ADDR, addr, sizeof(addr));
	buf[OFF_POOLLEN] = (uint8_t)plen;
	memcpy(buf + OFF_POOL, m->pool, plen);
	len = OFF_POOL + plen;
	if (llen > 0) {
		buf[len] = CODEC_TLV_LABEL;
		buf[len + 1] = (uint8_t)llen;
		memcpy(buf + len + 2, m->label, llen);
		len += 2 + llen;
	}
	if (m->has_maxconn) {
		buf[len] = CODEC_TLV_MAXCONN;
		buf[len + 1] = 4;
		put32(buf + len + 2, m->maxconn);
		len += 6;
	}
	if (m->has_load) {
		buf[len] = CODEC_TLV_LOAD;
		buf[len + 1] = m->has_conns ? 5 : 1;
		buf[len + 2] = m->load;
		if (m->has_conns)
			put32(buf + len + 3, m->conns);
		len += m->has_conns ? 7 : 3;
	}
	if (key != NULL && codec_tag(key, realm, buf, len, buf + len) == -1) {
		if (why != NULL)
			*why = "cannot compute HMAC";
		errno = EINVAL;
		return -1;
	}
	return (int)total;
}

const char *
codec_verdict_name(int v)
{
	static const char *const names[DISC_NVERDICTS] = {
		[DISC_OK] = "ok",
		[DISC_MALFORMED] = "malformed",
		[DISC_UNKNOWN_KEY] = "unknown_key",
		[DISC_BAD_MAC] = "bad_mac",
		[DISC_STALE] = "stale",
		[DISC_REPLAY] = "replay",
		[DISC_POLICY] = "policy",
		[DISC_CAP] = "cap",
	};

	if (v < 0 || v >= DISC_NVERDICTS)
		return "?";
	return names[v];
}

const char *
codec_state_name(int s)
{
	switch (s) {
	case CODEC_UP:
		return "up";
	case CODEC_DRAINING:
		return "draining";
	case CODEC_LEAVING:
		return "leaving";
	}
	return "?";
}
