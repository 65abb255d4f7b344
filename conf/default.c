/*
 * default.c - the configuration shoal uses when started without -c.
 *
 * It is also the smallest complete example: one frontend on localhost
 * relaying to whatever servers announce themselves on the loopback
 * interface (shoal-announce --pool app --port N). Every key not given
 * takes its default.
 */
#include "conf.h"

const char conf_default_text[] =
	"; shoal - built-in default configuration (started without -c)\n"
	";\n"
	"; Comments start with ';' (or '#' at the start of a line). Durations\n"
	"; need a unit: 500ms, 2s, 1m, 1h. Addresses are numeric:\n"
	"; 1.2.3.4:80 or [2001:db8::1]:80.\n"
	"\n"
	"[global]\n"
	"threads = auto              ; worker loops; auto = one per CPU\n"
	"maxconn = 10000             ; process-wide cap on client sessions\n"
	"grace = 30s                 ; how long SIGTERM waits for sessions\n"
	"log_level = info            ; error | warn | info | debug\n"
	"\n"
	"; A frontend accepts clients and hands them to one backend.\n"
	"[frontend web]\n"
	"bind = 127.0.0.1:8080       ; may repeat, e.g. bind = [::1]:8080\n"
	"backend = app\n"
	"timeout_client = 60s        ; idle time allowed on a session\n"
	"\n"
	"; A backend is a pool of servers and how to pick and check them.\n"
	"[backend app]\n"
	"balance = roundrobin ; roundrobin | leastconn | source | random\n"
	"check = tcp                 ; none | tcp | http | tls | send-expect\n"
	"check_interval = 1s\n"
	"check_timeout = 1s\n"
	"rise = 2                    ; successes before a server is up\n"
	"fall = 3                    ; failures before it is down\n"
	"timeout_connect = 2s\n"
	"timeout_server = 60s\n"
	"retries = 2                 ; more connect tries, on other servers\n"
	"; server = NAME ADDR:PORT [weight=N] [maxconn=N] [backup]\n"
	"; No static server here: servers announce themselves (below).\n"
	"discovery = yes             ; accept announced servers\n"
	"max_discovered = 64\n"
	"\n"
	"; Announcements: `shoal-announce --pool app --port N` on this host\n"
	"; adds 127.0.0.1:N to backend app once its checks pass.\n"
	"[discovery]\n"
	"group = 239.255.76.66\n"
	"port = 7466\n"
	"interface = lo\n"
	"; Unsigned announcements, loopback only. Anywhere else, set\n"
	"; key_file = /etc/shoal/discovery.key (lines \"ID HEXKEY\", mode 0600)\n"
	"; and remove auth = none.\n"
	"auth = none\n"
	"allow = 127.0.0.0/8\n"
	"max_skew = 30s\n";
