/*
 * tlsctx.c - server and client SSL_CTX building (see tlsctx.h for how
 * they are shared and how ticket keys rotate).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tlsctx.h"

/* One ticket key: name (sent in the clear in the ticket), AES-256-CBC
   key, HMAC-SHA256 key. */
struct ticket_key {
	unsigned char	 name[16];
	unsigned char	 aes[32];
	unsigned char	 hmac[32];
	bool		 set;		/* false: slot empty */
};

struct tlsctx_keys {
	pthread_mutex_t	 lock;		/* guards cur and prev */
	struct ticket_key cur;		/* encrypts and decrypts */
	struct ticket_key prev;		/* decrypts (ticket renewed) */
};

struct cert {
	X509		*x509;		/* leaf */
	EVP_PKEY	*pkey;		/* its key */
	STACK_OF(X509)	*chain;		/* intermediates, maybe empty */
	char		**names;	/* SAN DNS names, else the CN */
	size_t		 nnames;
};

struct tlsctx_server {
	SSL_CTX		*ctx;		/* shared by workers */
	struct cert	*certs;		/* certs[0] is the default */
	size_t		 ncerts;
	unsigned char	 alpn[TLSCTX_ALPN_MAX];	/* wire form */
	size_t		 alpn_len;	/* 0 = no ALPN */
	struct tlsctx_keys *keys;	/* borrowed */
	_Atomic int	 refs;		/* the builder's, the SSL_CTX's, and
					   one per SSL from tlsctx_server_ssl */
};

static int	 server_index = -1;	/* SSL_CTX ex_data: tlsctx_server */
static int	 ssl_index = -1;	/* SSL ex_data: tlsctx_server */
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void	 server_destroy(struct tlsctx_server *);

/*
 * The tlsctx_server lives as long as its SSL_CTX and every SSL made by
 * tlsctx_server_ssl(): each holds a reference, dropped by OpenSSL's
 * ex_data free callbacks in whichever thread frees it last. Our own
 * counter (not only OpenSSL's) orders every reader's last use before the
 * free, in a way ThreadSanitizer sees.
 */
static void
server_unref(struct tlsctx_server *s)
{
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1,
	    memory_order_acq_rel) == 1)
		server_destroy(s);
}

static void
server_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
	server_unref(ptr);
}

static void
index_init(void)
{
	server_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
	    server_ex_free);
	ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, server_ex_free);
}

__attribute__((format(printf, 3, 4)))
static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list		 ap;
	unsigned long	 e;
	size_t		 n;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* Append OpenSSL's own reason when it has one. */
	if ((e = ERR_peek_last_error()) != 0 && (n = strlen(err)) + 3 < errlen)
		snprintf(err + n, errlen - n, " (%s)", ERR_reason_error_string(e)
		    ? ERR_reason_error_string(e) : "unknown");
	ERR_clear_error();
}

static int
key_fill(struct ticket_key *k)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1)
		return -1;
	k->set = true;
	return 0;
}

struct tlsctx_keys *
tlsctx_keys_new(void)
{
	struct tlsctx_keys	*k;

	if ((k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	if (key_fill(&k->cur) == -1) {
		free(k);
		return NULL;
	}
	pthread_mutex_init(&k->lock, NULL);
	return k;
}

int
tlsctx_keys_rotate(struct tlsctx_keys *k)
{
	struct ticket_key	 fresh;

	if (key_fill(&fresh) == -1)
		return -1;
	pthread_mutex_lock(&k->lock);
	k->prev = k->cur;
	k->cur = fresh;
	pthread_mutex_unlock(&k->lock);
	OPENSSL_cleanse(&fresh, sizeof(fresh));
	return 0;
}

void
tlsctx_keys_free(struct tlsctx_keys *k)
{
	if (k == NULL)
		return;
	pthread_mutex_destroy(&k->lock);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * enc = 1, fill name, iv, and key the cipher and MAC with the current
 * key; enc = 0, find the key by name. Returns 1 (use), 2 (use and renew:
 * previous key), 0 (unknown key: full handshake), -1 (error). The key is
 * copied out under the lock so a rotation never tears it.
 */
static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
    EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tlsctx_server	*s;
	struct ticket_key	 k;
	OSSL_PARAM		 params[3];
	int			 r = 1;

	s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_index);
	if (s == NULL || s->keys == NULL)
		return 0;
	pthread_mutex_lock(&s->keys->lock);
	if (enc)
		k = s->keys->cur;
	else if (memcmp(name, s->keys->cur.name, 16) == 0)
		k = s->keys->cur;
	else if (s->keys->prev.set &&
	    memcmp(name, s->keys->prev.name, 16) == 0) {
		k = s->keys->prev;
		r = 2;
	} else
		r = 0;
	pthread_mutex_unlock(&s->keys->lock);
	if (r == 0)
		return 0;
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY,
	    k.hmac, sizeof(k.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, k.name, 16);
		if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
		    iv) != 1)
			r = -1;
	} else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
	    iv) != 1)
		r = -1;
	if (r != -1 && EVP_MAC_CTX_set_params(hctx, params) != 1)
		r = -1;
	OPENSSL_cleanse(&k, sizeof(k));
	return r;
}

/* "*.example.com" matches one label: "a.example.com", not "a.b..." */
static bool
name_match(const char *pat, const char *name)
{
	const char	*dot;

	if (pat[0] != '*')
		return strcasecmp(pat, name) == 0;
	if ((dot = strchr(name, '.')) == NULL || dot == name)
		return false;
	return strcasecmp(pat + 1, dot) == 0;
}

size_t
tlsctx_server_pick(const struct tlsctx_server *s, const char *sni)
{
	char		 name[256];
	size_t		 i, j, n;
	int		 pass;

	if (sni == NULL || (n = strlen(sni)) == 0 || n >= sizeof(name))
		return 0;
	memcpy(name, sni, n + 1);
	if (name[n - 1] == '.')
		name[n - 1] = '\0';
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < s->ncerts; i++)
			for (j = 0; j < s->certs[i].nnames; j++) {
				const char *p = s->certs[i].names[j];

				if ((p[0] == '*') == (pass == 1) &&
				    name_match(p, name))
					return i;
			}
	return 0;
}

size_t
tlsctx_server_nnames(const struct tlsctx_server *s, size_t i)
{
	return i < s->ncerts ? s->certs[i].nnames : 0;
}

const char *
tlsctx_server_name(const struct tlsctx_server *s, size_t i, size_t j)
{
	return i < s->ncerts && j < s->certs[i].nnames ?
	    s->certs[i].names[j] : NULL;
}

/* Certificate callback: runs during the ClientHello, after SNI is known;
   installs the chosen certificate, chain and key on this SSL only. */
static int
cert_cb(SSL *ssl, void *arg)
{
	struct tlsctx_server	*s = arg;
	struct cert		*c;
	size_t			 i;

	/* The default is the context's own (installed once at build):
	   copying a certificate and key into each SSL costs a share of a
	   handshake. Only another name's certificate is installed here. */
	if ((i = tlsctx_server_pick(s, SSL_get_servername(ssl,
	    TLSEXT_NAMETYPE_host_name))) == 0)
		return 1;
	c = &s->certs[i];
	return SSL_use_cert_and_key(ssl, c->x509, c->pkey, c->chain, 1);
}

static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tlsctx_server	*s = arg;
	unsigned char		*sel;

	/* Server preference; no common protocol: carry on without ALPN
	   (an L4 balancer should not fail the connection over it). */
	if (SSL_select_next_proto(&sel, outlen, s->alpn,
	    (unsigned int)s->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* "h2,http/1.1" to wire form; -1 for an empty entry or one > 255. */
static int
alpn_wire(const char *list, unsigned char *out, size_t *outlen)
{
	const char	*p = list, *e;
	size_t		 n, len = 0;

	while (*p != '\0') {
		e = strchr(p, ',');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		while (n > 0 && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)p[n - 1]))
			n--;
		if (n == 0 || n > 255 || len + 1 + n > TLSCTX_ALPN_MAX)
			return -1;
		out[len] = (unsigned char)n;
		memcpy(out + len + 1, p, n);
		len += 1 + n;
		if (e == NULL)
			break;
		p = e + 1;
	}
	*outlen = len;
	return len > 0 ? 0 : -1;
}

static int
add_name(struct cert *c, const char *s, size_t n)
{
	char	**v, *d;
	size_t	 i;

	if ((v = realloc(c->names, (c->nnames + 1) * sizeof(*v))) == NULL)
		return -1;
	c->names = v;
	if ((d = malloc(n + 1)) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		d[i] = (char)tolower((unsigned char)s[i]);
	d[n] = '\0';
	c->names[c->nnames++] = d;
	return 0;
}

/* SAN DNS names, else the subject's CN (RFC 6125 6.4.4). */
static int
gather_names(struct cert *c)
{
	GENERAL_NAMES	*gens;
	X509_NAME	*subj;
	ASN1_STRING	*cn;
	int		 i, idx, r = 0;

	gens = X509_get_ext_d2i(c->x509, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME	*g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_DNS && r == 0)
			r = add_name(c, (const char *)ASN1_STRING_get0_data(
			    g->d.dNSName), (size_t)ASN1_STRING_length(
			    g->d.dNSName));
	}
	GENERAL_NAMES_free(gens);
	if (r == 0 && c->nnames == 0 &&
	    (subj = X509_get_subject_name(c->x509)) != NULL &&
	    (idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1)) >= 0) {
		cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
		r = add_name(c, (const char *)ASN1_STRING_get0_data(cn),
		    (size_t)ASN1_STRING_length(cn));
	}
	return r;
}

static void
cert_fini(struct cert *c)
{
	size_t	 i;

	X509_free(c->x509);
	EVP_PKEY_free(c->pkey);
	sk_X509_pop_free(c->chain, X509_free);
	for (i = 0; i < c->nnames; i++)
		free(c->names[i]);
	free(c->names);
	memset(c, 0, sizeof(*c));
}

/*
 * Load one PEM file: the first certificate is the leaf, the others its
 * chain, and the private key may stand anywhere in it. 0, or -1 with
 * "path: reason" in err (and c emptied).
 */
static int
cert_load(struct cert *c, const char *path, bool check_dates, char *err,
    size_t errlen)
{
	BIO	*bio;
	X509	*x;

	memset(c, 0, sizeof(*c));
	ERR_clear_error();
	if ((bio = BIO_new_file(path, "r")) == NULL) {
		seterr(err, errlen, "%s: cannot open", path);
		return -1;
	}
	if ((c->x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		seterr(err, errlen, "%s: no certificate", path);
		goto fail;
	}
	c->chain = sk_X509_new_null();
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (c->chain == NULL || !sk_X509_push(c->chain, x)) {
			X509_free(x);
			seterr(err, errlen, "%s: out of memory", path);
			goto fail;
		}
	ERR_clear_error();		/* the end of the file */
	if (BIO_seek(bio, 0) != 0 ||
	    (c->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL,
	    (void *)"")) == NULL) {
		seterr(err, errlen, "%s: no private key (or encrypted)", path);
		goto fail;
	}
	if (X509_check_private_key(c->x509, c->pkey) != 1) {
		seterr(err, errlen, "%s: private key does not match the "
		    "certificate", path);
		goto fail;
	}
	if (check_dates && X509_cmp_current_time(X509_get0_notAfter(
	    c->x509)) < 0) {
		seterr(err, errlen, "%s: certificate expired", path);
		goto fail;
	}
	if (check_dates && X509_cmp_current_time(X509_get0_notBefore(
	    c->x509)) > 0) {
		seterr(err, errlen, "%s: certificate not valid yet", path);
		goto fail;
	}
	if (gather_names(c) == -1) {
		seterr(err, errlen, "%s: out of memory", path);
		goto fail;
	}
	if (c->nnames == 0) {
		seterr(err, errlen, "%s: certificate has no DNS name nor CN",
		    path);
		goto fail;
	}
	BIO_free(bio);
	return 0;
fail:
	BIO_free(bio);
	cert_fini(c);
	return -1;
}

static int
set_versions(SSL_CTX *ctx, int min, char *err, size_t errlen)
{
	if (min == 0)
		min = TLS1_2_VERSION;
	if ((min != TLS1_2_VERSION && min != TLS1_3_VERSION) ||
	    SSL_CTX_set_min_proto_version(ctx, min) != 1) {
		seterr(err, errlen, "tls_min: 1.2 or 1.3");
		return -1;
	}
	return 0;
}

struct tlsctx_server *
tlsctx_server_new(const struct tlsctx_server_conf *conf, char *err,
    size_t errlen)
{
	struct tlsctx_server	*s;
	size_t			 i;

	pthread_once(&index_once, index_init);
	if (conf->ncerts == 0) {
		snprintf(err, errlen, "cert: at least one file");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->certs = calloc(conf->ncerts, sizeof(*s->certs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	s->keys = conf->keys;
	atomic_init(&s->refs, 1);		/* the builder's */
	for (i = 0; i < conf->ncerts; i++, s->ncerts++)
		if (cert_load(&s->certs[i], conf->certs[i], true, err,
		    errlen) == -1)
			goto fail;
	if (conf->alpn != NULL && alpn_wire(conf->alpn, s->alpn,
	    &s->alpn_len) == -1) {
		snprintf(err, errlen, "alpn: a comma-separated list of "
		    "names of 1 to 255 bytes");
		goto fail;
	}
	if ((s->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		seterr(err, errlen, "SSL_CTX_new failed");
		goto fail;
	}
	if (set_versions(s->ctx, conf->min_version, err, errlen) == -1)
		goto fail;
	if (SSL_CTX_set_ex_data(s->ctx, server_index, s) != 1) {
		seterr(err, errlen, "out of memory");
		goto fail;
	}
	atomic_fetch_add(&s->refs, 1);		/* the SSL_CTX's */
	/* A peer closing without close_notify ends its stream (EOF), as a
	   FIN does in plain TCP: relayed as such, not as an error. */
	SSL_CTX_set_options(s->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
	    (conf->ktls ? SSL_OP_ENABLE_KTLS : 0));
	/* Read ahead: one read(2) takes what the socket has, not a record
	   header then its body (the relay reads until OpenSSL wants more). */
	SSL_CTX_set_read_ahead(s->ctx, 1);
	SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* No server-side cache (its lock would be shared by every worker):
	   tickets only, or no resumption when there are no keys. */
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	if (s->keys != NULL) {
		SSL_CTX_set_tlsext_ticket_key_evp_cb(s->ctx, ticket_cb);
		SSL_CTX_set_num_tickets(s->ctx, 1);
	} else {
		SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(s->ctx, 0);
	}
	if (SSL_CTX_use_cert_and_key(s->ctx, s->certs[0].x509,
	    s->certs[0].pkey, s->certs[0].chain, 1) != 1) {
		seterr(err, errlen, "%s: certificate not usable",
		    conf->certs[0]);
		goto fail;
	}
	SSL_CTX_set_cert_cb(s->ctx, cert_cb, s);
	if (s->alpn_len > 0)
		SSL_CTX_set_alpn_select_cb(s->ctx, alpn_cb, s);
	return s;
fail:
	tlsctx_server_free(s);
	return NULL;
}

static void
server_destroy(struct tlsctx_server *s)
{
	size_t	 i;

	if (s == NULL)
		return;
	for (i = 0; i < s->ncerts; i++)
		cert_fini(&s->certs[i]);
	free(s->certs);
	free(s);
}

void
tlsctx_server_free(struct tlsctx_server *s)
{
	SSL_CTX	*ctx;

	if (s == NULL)
		return;
	ctx = s->ctx;
	if (ctx != NULL && SSL_CTX_get_ex_data(ctx, server_index) == s) {
		server_unref(s);	/* the builder's; s is not read after */
		SSL_CTX_free(ctx);	/* s goes with the last reference */
	} else {
		SSL_CTX_free(ctx);
		server_destroy(s);
	}
}

SSL *
tlsctx_server_ssl(struct tlsctx_server *s)
{
	SSL	*ssl;

	if ((ssl = SSL_new(s->ctx)) == NULL)
		return NULL;
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	if (SSL_set_ex_data(ssl, ssl_index, s) != 1) {
		server_unref(s);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

SSL_CTX *
tlsctx_server_ctx(const struct tlsctx_server *s)
{
	return s->ctx;
}

SSL_CTX *
tlsctx_client_new(const struct tlsctx_client_conf *conf, char *err,
    size_t errlen)
{
	SSL_CTX		*ctx;
	struct cert	 c;
	unsigned char	 alpn[TLSCTX_ALPN_MAX];
	size_t		 alpn_len;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		seterr(err, errlen, "SSL_CTX_new failed");
		return NULL;
	}
	if (set_versions(ctx, conf->min_version, err, errlen) == -1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF | (conf->ktls ? SSL_OP_ENABLE_KTLS :
	    0));
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (conf->verify != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, conf->verify,
		    NULL) != 1) {
			seterr(err, errlen, "%s: cannot load CA bundle",
			    conf->verify);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (conf->cert != NULL) {
		/* A client certificate may be expired on purpose in a test
		   lab; the server judges it. */
		if (cert_load(&c, conf->cert, false, err, errlen) == -1)
			goto fail;
		if (SSL_CTX_use_cert_and_key(ctx, c.x509, c.pkey, c.chain,
		    1) != 1) {
			seterr(err, errlen, "%s: certificate not usable",
			    conf->cert);
			cert_fini(&c);
			goto fail;
		}
		cert_fini(&c);
	}
	if (conf->alpn != NULL && (alpn_wire(conf->alpn, alpn,
	    &alpn_len) == -1 || SSL_CTX_set_alpn_protos(ctx, alpn,
	    (unsigned int)alpn_len) != 0)) {
		snprintf(err, errlen, "alpn: a comma-separated list of "
		    "names of 1 to 255 bytes");
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *
tlsctx_client_ssl(SSL_CTX *ctx, const char *name)
{
	SSL	*ssl;

	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (name != NULL && name[0] != '\0' &&
	    (SSL_set_tlsext_host_name(ssl, name) != 1 ||
	    (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER &&
	    SSL_set1_host(ssl, name) != 1))) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}
