/*
 * clienthello.c - the TLS ClientHello read from a connection's first
 * bytes, and SNI route patterns (see clienthello.h for the wire layout).
 *
 * Two steps: walk_records() checks record headers and gathers the
 * handshake bytes they carry (in place when one record holds the whole
 * message, else into a copy); parse_body() reads the ClientHello body
 * through a bounds-checked cursor.
 */
#include <ctype.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "clienthello.h"

#define REC_HANDSHAKE	22
#define HS_CLIENT_HELLO	1
#define HS_HEADER	4		/* type(1) length(3) */
#define BODY_MIN	(2 + 32 + 1 + 2 + 2 + 1 + 1)

#define EXT_SERVER_NAME		0x0000
#define EXT_ALPN		0x0010
#define EXT_SUPPORTED_VERSIONS	0x002b
#define EXT_ECH			0xfe0d

/* GREASE (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa. */
static bool
is_grease(uint16_t v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

struct walk {
	size_t		 got;		/* handshake bytes gathered */
	size_t		 end;		/* input offset just past the last
					   byte gathered */
	const uint8_t	*single;	/* all wanted bytes, in place in the
					   first record; NULL otherwise */
	uint16_t	 version;	/* first record's version */
};

/*
 * Walk the records in buf[0, len), gathering up to want handshake bytes
 * (copied to out when out is not NULL). Returns NEED_MORE when the bytes
 * seen are a valid prefix (w->got tells how far it went), NOT_TLS or
 * MALFORMED otherwise.
 */
static enum clienthello_verdict
walk_records(const uint8_t *buf, size_t len, uint8_t *out, size_t want,
    struct walk *w, const char **why)
{
	const uint8_t	*h;
	size_t		 off = 0, rem, rlen, frag, take;
	bool		 first = true;

	memset(w, 0, sizeof(*w));
	while (w->got < want && off < len) {
		h = buf + off;
		rem = len - off;
		if (h[0] != REC_HANDSHAKE) {
			if (!first) {
				*why = "a record of another type inside the "
				    "ClientHello";
				return CLIENTHELLO_MALFORMED;
			}
			if ((h[0] & 0x80) && rem >= 3 && h[2] == 1)
				*why = "SSLv2-compatible hello (no "
				    "extensions, no SNI)";
			else
				*why = "not a TLS handshake record";
			return CLIENTHELLO_NOT_TLS;
		}
		if ((rem >= 2 && h[1] != 3) || (rem >= 3 && h[2] > 4)) {
			*why = "not a TLS record version (03 00..03 04)";
			return first ? CLIENTHELLO_NOT_TLS :
			    CLIENTHELLO_MALFORMED;
		}
		if (rem < 5)
			break;
		if (first)
			w->version = (uint16_t)(h[1] << 8 | h[2]);
		rlen = (size_t)h[3] << 8 | h[4];
		if (rlen == 0) {
			*why = "an empty handshake record";
			return CLIENTHELLO_MALFORMED;
		}
		if (rlen > CLIENTHELLO_RECORD_MAX) {
			*why = "a record longer than 16384 bytes";
			return CLIENTHELLO_MALFORMED;
		}
		frag = rlen < rem - 5 ? rlen : rem - 5;
		take = frag < want - w->got ? frag : want - w->got;
		if (out != NULL)
			memcpy(out + w->got, h + 5, take);
		if (first && take == want)
			w->single = h + 5;
		w->got += take;
		w->end = off + 5 + take;
		off += 5 + rlen;	/* may pass len: the loop ends */
		first = false;
	}
	return CLIENTHELLO_NEED_MORE;
}

/* A bounds-checked cursor over the ClientHello body. */
struct cur {
	const uint8_t	*p;
	size_t		 n;		/* bytes left */
};

static bool
take(struct cur *c, size_t k, struct cur *sub)
{
	if (c->n < k)
		return false;
	if (sub != NULL) {
		sub->p = c->p;
		sub->n = k;
	}
	c->p += k;
	c->n -= k;
	return true;
}

static bool
u8(struct cur *c, size_t *v)
{
	if (c->n < 1)
		return false;
	*v = c->p[0];
	return take(c, 1, NULL);
}

static bool
u16(struct cur *c, size_t *v)
{
	if (c->n < 2)
		return false;
	*v = (size_t)c->p[0] << 8 | c->p[1];
	return take(c, 2, NULL);
}

/* A host name as sent in SNI: LDH labels, '_' tolerated (seen in the
   wild), dots between labels, an optional trailing dot. */
static bool
valid_host(const uint8_t *s, size_t n)
{
	size_t	 i, label = 0;

	if (n == 0 || n > CLIENTHELLO_SNI_MAX)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(s[i]) || s[i] == '-' || s[i] == '_') ||
		    s[i] > 0x7f || ++label > 63)
			return false;
	}
	return true;
}

static const char *
parse_sni(struct cur c, struct clienthello *ch)
{
	struct cur	 list, name;
	size_t		 n, type;

	if (!u16(&c, &n) || n == 0 || !take(&c, n, &list) || c.n != 0)
		return "server_name list length wrong";
	while (list.n > 0) {
		if (!u8(&list, &type) || !u16(&list, &n) ||
		    !take(&list, n, &name))
			return "server_name entry overruns its list";
		if (type != 0)
			continue;	/* no other type defined: skip */
		if (ch->has_sni)
			return "two host names in server_name";
		if (!valid_host(name.p, name.n))
			return "server_name is not a host name";
		memcpy(ch->sni, name.p, name.n);
		ch->sni[name.n] = '\0';
		ch->sni_len = name.n;
		ch->has_sni = true;
	}
	return NULL;
}

static const char *
parse_alpn(struct cur c, struct clienthello *ch)
{
	struct cur	 list, proto;
	size_t		 n;

	if (!u16(&c, &n) || n < 2 || !take(&c, n, &list) || c.n != 0)
		return "ALPN list length wrong";
	ch->has_alpn = true;
	while (list.n > 0) {
		if (!u8(&list, &n) || n == 0 || !take(&list, n, &proto))
			return "ALPN entry empty or overrunning its list";
		if (ch->alpn_len + 1 + n > sizeof(ch->alpn)) {
			ch->alpn_truncated = true;
			continue;
		}
		ch->alpn[ch->alpn_len] = (uint8_t)n;
		memcpy(ch->alpn + ch->alpn_len + 1, proto.p, n);
		ch->alpn_len += 1 + n;
		ch->alpn_count++;
	}
	return NULL;
}

static const char *
parse_versions(struct cur c, struct clienthello *ch)
{
	size_t	 n, v;

	if (!u8(&c, &n) || n < 2 || n % 2 != 0 || c.n != n)
		return "supported_versions length wrong";
	while (c.n > 0) {
		(void)u16(&c, &v);
		if (is_grease((uint16_t)v))
			continue;
		if (ch->nversions < CLIENTHELLO_VERSIONS_MAX)
			ch->versions[ch->nversions++] = (uint16_t)v;
		if (v > ch->version && v <= 0x0304)
			ch->version = (uint16_t)v;
	}
	if (ch->nversions == 0)
		return "supported_versions holds only GREASE";
	return NULL;
}

static const char *
parse_extensions(struct cur c, struct clienthello *ch)
{
	struct cur	 exts, data;
	size_t		 n, type;
	const char	*why;
	bool		 seen_sni = false, seen_alpn = false, seen_sv = false;

	if (!u16(&c, &n) || !take(&c, n, &exts) || c.n != 0)
		return "extensions length does not fill the ClientHello";
	while (exts.n > 0) {
		if (!u16(&exts, &type) || !u16(&exts, &n) ||
		    !take(&exts, n, &data))
			return "an extension overruns the extensions block";
		why = NULL;
		switch (type) {
		case EXT_SERVER_NAME:
			if (seen_sni)
				return "server_name sent twice";
			seen_sni = true;
			why = parse_sni(data, ch);
			break;
		case EXT_ALPN:
			if (seen_alpn)
				return "ALPN sent twice";
			seen_alpn = true;
			why = parse_alpn(data, ch);
			break;
		case EXT_SUPPORTED_VERSIONS:
			if (seen_sv)
				return "supported_versions sent twice";
			seen_sv = true;
			ch->version = 0;
			why = parse_versions(data, ch);
			break;
		case EXT_ECH:
			ch->has_ech = true;
			break;
		}
		if (why != NULL)
			return why;
	}
	return NULL;
}

/* Body of n bytes; NULL or the reason it is malformed. */
static const char *
parse_body(const uint8_t *p, size_t n, struct clienthello *ch)
{
	struct cur	 c = { p, n };
	size_t		 v, k;

	if (!u16(&c, &v) || (v >> 8) != 3)
		return "ClientHello legacy_version is not 03 xx";
	ch->legacy_version = (uint16_t)v;
	ch->version = (uint16_t)v;
	if (!take(&c, 32, NULL))
		return "ClientHello shorter than its random";
	if (!u8(&c, &k) || k > 32 || !take(&c, k, NULL))
		return "session_id longer than 32 bytes or overrunning";
	if (!u16(&c, &k) || k < 2 || k % 2 != 0 || !take(&c, k, NULL))
		return "cipher_suites empty, odd or overrunning";
	if (!u8(&c, &k) || k < 1 || !take(&c, k, NULL))
		return "compression_methods empty or overrunning";
	if (c.n == 0)
		return NULL;		/* no extensions: legal, no SNI */
	return parse_extensions(c, ch);
}

enum clienthello_verdict
clienthello_parse(const uint8_t *buf, size_t len, struct clienthello *ch,
    const char **why)
{
	struct walk		 w;
	enum clienthello_verdict v;
	uint8_t			 hdr[HS_HEADER];
	uint8_t			*copy = NULL;
	const uint8_t		*body;
	size_t			 hlen;
	const char		*bad;

	*why = NULL;
	v = walk_records(buf, len, hdr, HS_HEADER, &w, why);
	if (v != CLIENTHELLO_NEED_MORE)
		return v;
	if (w.got >= 1 && hdr[0] != HS_CLIENT_HELLO) {
		*why = "the first handshake message is not a ClientHello";
		return CLIENTHELLO_MALFORMED;
	}
	if (w.got < HS_HEADER)
		return CLIENTHELLO_NEED_MORE;
	hlen = (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (hlen < BODY_MIN) {
		*why = "ClientHello shorter than its fixed fields";
		return CLIENTHELLO_MALFORMED;
	}
	if (hlen > CLIENTHELLO_MAX) {
		*why = "ClientHello longer than 65536 bytes";
		return CLIENTHELLO_MALFORMED;
	}
	/* Count first, copy only when the message is complete and split. */
	v = walk_records(buf, len, NULL, HS_HEADER + hlen, &w, why);
	if (v != CLIENTHELLO_NEED_MORE)
		return v;
	if (w.got < HS_HEADER + hlen)
		return CLIENTHELLO_NEED_MORE;
	if (w.single != NULL) {
		body = w.single + HS_HEADER;
	} else {
		if ((copy = malloc(HS_HEADER + hlen)) == NULL) {
			*why = "out of memory";
			return CLIENTHELLO_MALFORMED;
		}
		(void)walk_records(buf, len, copy, HS_HEADER + hlen, &w, why);
		body = copy + HS_HEADER;
	}
	memset(ch, 0, sizeof(*ch));
	ch->record_version = w.version;
	ch->len = w.end;
	bad = parse_body(body, hlen, ch);
	free(copy);
	if (bad != NULL) {
		*why = bad;
		return CLIENTHELLO_MALFORMED;
	}
	return CLIENTHELLO_OK;
}

const char *
clienthello_version_name(uint16_t version)
{
	switch (version) {
	case 0x0300:	return "SSLv3";
	case 0x0301:	return "TLSv1";
	case 0x0302:	return "TLSv1.1";
	case 0x0303:	return "TLSv1.2";
	case 0x0304:	return "TLSv1.3";
	}
	return "unknown";
}

int
clienthello_route_parse(const char *pattern, struct clienthello_route *r,
    const char **why)
{
	const char	*s = pattern;
	size_t		 n, i;

	memset(r, 0, sizeof(*r));
	if (s[0] == '*') {
		if (s[1] != '.') {
			*why = "'*' only as a leading \"*.\"";
			return -1;
		}
		r->wildcard = true;
		s++;			/* keep the dot: ".suffix" */
	}
	n = strlen(s);
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || (r->wildcard && n == 1)) {
		*why = "empty name";
		return -1;
	}
	if (n > CLIENTHELLO_SNI_MAX) {
		*why = "name longer than 255 bytes";
		return -1;
	}
	if (!valid_host((const uint8_t *)s + r->wildcard, n - r->wildcard)) {
		*why = "not a host name (letters, digits, '-', '_', dots "
		    "between labels)";
		return -1;
	}
	for (i = 0; i < n; i++)
		r->name[i] = (char)tolower((unsigned char)s[i]);
	r->name[n] = '\0';
	r->len = n;
	return 0;
}

int
clienthello_route_match(const struct clienthello_route *routes, size_t n,
    const char *name, size_t len)
{
	size_t	 i;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0)
		return -1;
	for (i = 0; i < n; i++) {
		const struct clienthello_route *r = &routes[i];

		if (r->wildcard) {
			if (len > r->len && strncasecmp(name + len - r->len,
			    r->name, r->len) == 0)
				return (int)i;
		} else if (len == r->len && strncasecmp(name, r->name,
		    len) == 0)
			return (int)i;
	}
	return -1;
}
