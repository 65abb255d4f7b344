/*
 * clienthello.h - the TLS ClientHello as it arrives on a connection, read
 * without decrypting anything (RFC 8446 4.1.2, RFC 5246 7.4.1.2), and the
 * SNI route patterns matched against its server name.
 *
 * Pure: bytes in, a verdict out. No sockets, no clocks, no OpenSSL. The
 * caller peeks (or buffers) the first bytes of a connection, calls
 * clienthello_parse() on all of them after every read until it answers
 * something other than CLIENTHELLO_NEED_MORE, owns the deadline
 * (timeout_preread), and replays the bytes untouched to the server.
 *
 *   record:     type(1) = 22 handshake, version(2) = 03 00..03 04,
 *               length(2) 1..16384, fragment
 *   handshake:  type(1) = 1 ClientHello, length(3), body; the body may be
 *               split across any number of records (never interleaved
 *               with another record type)
 *   body:       legacy_version(2) random(32) session_id(1+0..32)
 *               cipher_suites(2+2..65534, even) compression(1+1..255)
 *               [extensions(2+...): type(2) length(2) data]
 *
 * Extensions read: server_name (0), ALPN (16), supported_versions (43),
 * encrypted_client_hello (0xfe0d, noted only: the SNI seen is then the
 * outer, public name). Every other extension, GREASE ones included, is
 * skipped after its bounds are checked.
 */
#ifndef SHOAL_CLIENTHELLO_H
#define SHOAL_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENTHELLO_RECORD_MAX	16384	/* TLSPlaintext fragment limit */
#define CLIENTHELLO_MAX		65536	/* longest ClientHello body taken
					   (4 records' worth; the biggest
					   real ones, with post-quantum key
					   shares and padding, are < 8 KiB) */
#define CLIENTHELLO_SNI_MAX	255	/* host name bytes (RFC 6066: < 2^16,
					   DNS: 255) */
#define CLIENTHELLO_ALPN_MAX	512	/* ALPN list bytes kept, wire form */
#define CLIENTHELLO_VERSIONS_MAX 16	/* supported_versions kept */

enum clienthello_verdict {
	CLIENTHELLO_NEED_MORE = 0,	/* a valid prefix: read more bytes */
	CLIENTHELLO_OK,			/* a whole ClientHello was read */
	CLIENTHELLO_NOT_TLS,		/* the first bytes are not a TLS
					   handshake record (plain text,
					   SSLv2-style hello, ...) */
	CLIENTHELLO_MALFORMED,		/* TLS records, but no valid
					   ClientHello in them */
};

/* One parsed ClientHello. Strings are copied: nothing points into the
   caller's buffer. */
struct clienthello {
	size_t		 len;		/* bytes of the input (records,
					   headers included) that held the
					   ClientHello */
	uint16_t	 record_version;	/* first record's version */
	uint16_t	 legacy_version;	/* body's legacy_version */
	uint16_t	 version;	/* highest non-GREASE version offered:
					   supported_versions, else
					   legacy_version (0x0304 = 1.3) */
	bool		 has_sni;	/* a host_name was sent */
	char		 sni[CLIENTHELLO_SNI_MAX + 1];	/* as sent (case and
					   any trailing dot kept), NUL-ended */
	size_t		 sni_len;	/* bytes in sni */
	bool		 has_alpn;	/* the ALPN extension was sent */
	uint8_t		 alpn[CLIENTHELLO_ALPN_MAX];	/* offered protocols,
					   wire form: len(1) name, ... */
	size_t		 alpn_len;	/* bytes in alpn (whole entries) */
	int		 alpn_count;	/* entries in alpn */
	bool		 alpn_truncated;	/* entries beyond the limit were
					   dropped */
	uint16_t	 versions[CLIENTHELLO_VERSIONS_MAX];	/* from
					   supported_versions, GREASE left
					   out, order kept */
	int		 nversions;	/* entries in versions; 0 = no such
					   extension */
	bool		 has_ech;	/* encrypted_client_hello present */
};

/*
 * Parse the first len bytes of a connection. Reads no byte outside
 * buf[0, len) and does not keep buf. Returns the verdict; *why gets a
 * static reason for NOT_TLS and MALFORMED (NULL otherwise). ch is filled
 * for OK only. Every answer but NEED_MORE is final: more bytes never
 * change it. May allocate (and frees before returning) a copy of a
 * ClientHello split across records; out of memory is MALFORMED.
 */
enum clienthello_verdict clienthello_parse(const uint8_t *buf, size_t len,
		    struct clienthello *ch, const char **why);

/* Short name of a TLS version ("TLSv1.2", ...), "unknown" otherwise. */
const char	*clienthello_version_name(uint16_t version);

/*
 * SNI route patterns: "name.example" (exact) or "*.example" (any name
 * ending in ".example", with one or more labels before it; not
 * "example" itself, as nginx's server_name). Case-insensitive; a trailing
 * dot on a pattern or a name is ignored.
 */
struct clienthello_route {
	char		 name[CLIENTHELLO_SNI_MAX + 1];	/* lowercased, no
					   trailing dot; for a wildcard the
					   suffix with its leading dot */
	size_t		 len;		/* bytes in name */
	bool		 wildcard;	/* pattern was "*.suffix" */
};

/* Parse pattern into *r. Returns 0, or -1 with a static reason in *why
   (empty, too long, bad character, '*' other than as "*." prefix). */
int		 clienthello_route_parse(const char *pattern,
		    struct clienthello_route *r, const char **why);

/* Index of the first of n routes matching the server name (len bytes, as
   sent), or -1 when none does (or len is 0: no SNI). */
int		 clienthello_route_match(const struct clienthello_route *routes,
		    size_t n, const char *name, size_t len);

#endif /* SHOAL_CLIENTHELLO_H */
