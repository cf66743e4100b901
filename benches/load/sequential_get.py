"""GETs each URL of a file in turn on one keep-alive connection (Python's http.client), and
checks each answer is a 200 with a 4 KiB body. For the scripts that count what one download
costs (callgrind.sh, malloc_count.sh).

    python3 sequential_get.py PORT URLS_FILE
"""
import http.client
import sys

port, urls = int(sys.argv[1]), sys.argv[2]
c = http.client.HTTPConnection("127.0.0.1", port)
for u in open(urls).read().split():
    c.request("GET", u)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and len(body) == 4096, r.status
