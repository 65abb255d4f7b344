/*
 * proxyproto.h - the PROXY protocol header, versions 1 (text) and 2
 * (binary), as HAProxy's doc/proxy-protocol.txt specifies it.
 *
 * Pure: bytes in, a header or a verdict out; addresses in, bytes out. No
 * sockets, no clocks. The caller reads (or peeks) the first bytes of a
 * connection, calls proxyproto_decode() until it answers, and owns the
 * deadline (timeout_proxy) and the policy (accept_proxy_from).
 *
 *   v1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", or "PROXY UNKNOWN...\r\n",
 *       at most 107 bytes with the CRLF.
 *   v2:  off size field
 *          0  12  signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *         12   1  version (high nibble, = 2) | command (0 LOCAL, 1 PROXY)
 *         13   1  family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) |
 *                 transport (0 UNSPEC, 1 STREAM, 2 DGRAM)
 *         14   2  length of what follows (big-endian)
 *         16   -  addresses (INET 12, INET6 36, UNIX 216 bytes), then TLVs
 *                 type(1) length(2) value
 */
#ifndef SHOAL_PROXYPROTO_H
#define SHOAL_PROXYPROTO_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXYPROTO_V1_MAX	107	/* longest v1 line, CRLF included */
#define PROXYPROTO_V2_FIXED	16	/* signature, ver/cmd, family, length */
#define PROXYPROTO_MAX		4096	/* longest header accepted (v2: 16 +
					   4080; nginx's limit too) */
#define PROXYPROTO_UNIQUE_ID_MAX 128	/* PP2_TYPE_UNIQUE_ID value bytes */

/* v2 TLV types this module knows (the spec's registry). */
#define PP2_TYPE_ALPN		0x01
#define PP2_TYPE_AUTHORITY	0x02
#define PP2_TYPE_CRC32C		0x03	/* verified when present */
#define PP2_TYPE_NOOP		0x04
#define PP2_TYPE_UNIQUE_ID	0x05	/* sent by proxyproto_encode() */
#define PP2_TYPE_SSL		0x20
#define PP2_TYPE_NETNS		0x30

/* One decoded header. */
struct proxyproto_hdr {
	int			 version;	/* 1 or 2 */
	bool			 local;		/* v2 LOCAL: a check from the
						   proxy itself */
	bool			 has_addr;	/* src/dst are the client's and
						   the original destination;
						   false: keep the connection's
						   own (v1 UNKNOWN, v2 LOCAL,
						   UNSPEC, UNIX, DGRAM) */
	struct sockaddr_storage	 src;		/* AF_INET or AF_INET6, port */
	struct sockaddr_storage	 dst;
	size_t			 tlv_off;	/* v2 PROXY INET/INET6: the TLV
						   block, offset from the */
	size_t			 tlv_len;	/* header start; 0 = none */
};

/*
 * Decode the header at the start of buf[0, n), version auto-detected from
 * the first byte. Returns the header length (> 0; the application's bytes
 * start there) with *h filled; 0 when buf is a valid but incomplete
 * prefix (read more and call again with all bytes so far); -1 when the
 * bytes can never become a valid header, with a static reason in *why
 * (never NULL then). A prefix is refused as soon as it is wrong: a bad
 * signature, version, command or family, or a v2 length above
 * PROXYPROTO_MAX, does not wait for more bytes; a v1 line without its
 * CRLF in 107 bytes is refused. TLVs are bounds-checked; CRC32C is
 * verified; every other TLV is skipped. *h is unspecified unless > 0.
 */
int		 proxyproto_decode(const uint8_t *buf, size_t n,
		    struct proxyproto_hdr *h, const char **why);

/*
 * Encode a header of version 1 or 2 into buf (bufsz bytes; PROXYPROTO_MAX
 * is always enough) for a connection from src to dst (each AF_INET or
 * AF_INET6 with its port). Mixed families are sent as IPv6 with the IPv4
 * side IPv4-mapped (::ffff:a.b.c.d), so the client's address is never
 * lost. src and dst both NULL is a connection of the proxy's own (a
 * health check): v2 LOCAL, v1 "PROXY UNKNOWN". Any other family: v2 PROXY
 * with family UNSPEC, v1 "PROXY UNKNOWN". unique_id (idlen 1..128 bytes,
 * or NULL) adds a PP2_TYPE_UNIQUE_ID TLV to a v2 PROXY header; v1 has no
 * room for it and ignores it. Returns the header length, or -1 with
 * errno EINVAL (version, one address NULL, idlen) or EMSGSIZE.
 */
int		 proxyproto_encode(int version, const struct sockaddr *src,
		    const struct sockaddr *dst, const void *unique_id,
		    size_t idlen, uint8_t *buf, size_t bufsz);

/*
 * Find the first TLV of type in a v2 header's TLV block (buf is the whole
 * header as given to proxyproto_decode(), h its result). Returns the
 * value's length with *value pointing into buf, or -1 when absent.
 */
int		 proxyproto_tlv(const uint8_t *buf,
		    const struct proxyproto_hdr *h, uint8_t type,
		    const uint8_t **value);

#endif /* SHOAL_PROXYPROTO_H */
