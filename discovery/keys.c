/*
 * keys.c - load discovery key files ("ID HEXKEY" lines, mode 0600).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keys.h"

#define KEYFILE_MAX	(64 * 1024)	/* more than 255 keys ever need */

__attribute__((format(printf, 4, 5)))
static int
kerr(char *err, const char *path, int line, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (line > 0)
		n = snprintf(err, KEYS_ERR_MAX, "%s:%d: ", path, line);
	else
		n = snprintf(err, KEYS_ERR_MAX, "%s: ", path);
	if (n < 0 || n >= KEYS_ERR_MAX)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, KEYS_ERR_MAX - n, fmt, ap);
	va_end(ap);
	return -1;
}

static int
hexval(int c)
{
	return OPENSSL_hexchar2int((unsigned char)c);
}

/* Parse one line (NUL terminated, no '\n') into k; 1 = a key, 0 = blank
 * or comment, -1 = error (message in err). */
static int
parse_line(char *s, const char *path, int line, struct codec_key *k,
    char *err)
{
	char	*id, *hex, *rest, *save;
	long	 v;
	size_t	 hlen, i;
	int	 hi, lo;

	for (i = 0; s[i] != '\0'; i++)
		if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' ||
		    s[i - 1] == '\t')) {
			s[i] = '\0';
			break;
		}
	s[strcspn(s, "\r")] = '\0';
	if ((id = strtok_r(s, " \t", &save)) == NULL)
		return 0;
	hex = strtok_r(NULL, " \t", &save);
	rest = hex != NULL ? strtok_r(NULL, " \t", &save) : NULL;
	if (hex == NULL || rest != NULL)
		return kerr(err, path, line, "expected 'ID HEXKEY'");
	v = 0;
	for (i = 0; id[i] != '\0'; i++) {
		if (id[i] < '0' || id[i] > '9' || i >= 3)
			return kerr(err, path, line, "key id must be a "
			    "number 1-255");
		v = v * 10 + (id[i] - '0');
	}
	if (v < 1 || v > 255)
		return kerr(err, path, line, "key id must be a number 1-255");
	hlen = strlen(hex);
	if (hlen % 2 != 0 || hlen / 2 < CODEC_KEY_MIN ||
	    hlen / 2 > CODEC_KEY_MAX)
		return kerr(err, path, line, "key must be %d-%d bytes written "
		    "as %d-%d hex digits (32 bytes recommended)", CODEC_KEY_MIN,
		    CODEC_KEY_MAX, CODEC_KEY_MIN * 2, CODEC_KEY_MAX * 2);
	for (i = 0; i < hlen; i += 2) {
		if ((hi = hexval(hex[i])) == -1 ||
		    (lo = hexval(hex[i + 1])) == -1)
			return kerr(err, path, line, "key is not hexadecimal");
		k->key[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	k->id = (uint8_t)v;
	k->len = (uint8_t)(hlen / 2);
	return 1;
}

int
keys_load(const char *path, struct codec_key *keys, size_t max, size_t *n,
    char err[KEYS_ERR_MAX])
{
	struct stat	 st;
	struct codec_key k;
	char		*buf = NULL, *line, *nl;
	ssize_t		 r;
	size_t		 len = 0, i;
	int		 fd, lineno = 0, rc = -1, pr;

	*n = 0;
	err[0] = '\0';
	/* O_NONBLOCK: a FIFO must not block the control loop (reload). */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1)
		return kerr(err, path, 0, "cannot open key file: %s",
		    strerror(errno));
	if (fstat(fd, &st) == -1) {
		kerr(err, path, 0, "cannot stat key file: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		kerr(err, path, 0, "key file is not a regular file");
		goto out;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		kerr(err, path, 0, "key file mode %04o is too open: group and "
		    "others must have no access (chmod 600 %s)",
		    (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > KEYFILE_MAX) {
		kerr(err, path, 0, "key file larger than %d bytes",
		    KEYFILE_MAX);
		goto out;
	}
	if ((buf = malloc(KEYFILE_MAX + 1)) == NULL) {
		kerr(err, path, 0, "%s", strerror(errno));
		goto out;
	}
	for (;;) {
		r = read(fd, buf + len, KEYFILE_MAX + 1 - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			kerr(err, path, 0, "cannot read key file: %s",
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > KEYFILE_MAX) {
			kerr(err, path, 0, "key file larger than %d bytes",
			    KEYFILE_MAX);
			goto out;
		}
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		kerr(err, path, 0, "NUL byte in key file");
		goto out;
	}
	for (line = buf; line < buf + len; line = nl + 1) {
		lineno++;
		if ((nl = strchr(line, '\n')) != NULL)
			*nl = '\0';
		pr = parse_line(line, path, lineno, &k, err);
		if (pr == -1)
			goto out;
		if (pr == 1) {
			for (i = 0; i < *n; i++)
				if (keys[i].id == k.id) {
					kerr(err, path, lineno, "duplicate key "
					    "id %d", k.id);
					goto out;
				}
			if (*n >= max) {
				kerr(err, path, lineno, "too many keys");
				goto out;
			}
			keys[(*n)++] = k;
		}
		if (nl == NULL)
			break;
	}
	if (*n == 0) {
		kerr(err, path, 0, "no key in key file (expected lines "
		    "'ID HEXKEY')");
		goto out;
	}
	rc = 0;
out:
	if (rc == -1) {
		keys_wipe(keys, *n);
		*n = 0;
	}
	keys_wipe(&k, 1);
	if (buf != NULL) {
		explicit_bzero(buf, len);
		free(buf);
	}
	close(fd);
	return rc;
}

const struct codec_key *
keys_find(const struct codec_key *keys, size_t n, int id)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (keys[i].id == id)
			return &keys[i];
	return NULL;
}

void
keys_wipe(struct codec_key *keys, size_t n)
{
	explicit_bzero(keys, n * sizeof(*keys));
}
