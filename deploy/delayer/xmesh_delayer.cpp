// xmesh-delayer: the link emulator deploy/netns.sh runs on each host namespace's ingress (these
// kernels have no netem). iptables hands every packet arriving on eth0 to NFQUEUE; this process
// holds each for the delay of its source's link (plus jitter, never reordering one source's
// packets), drops a fraction of them, and releases the rest in time order. Delaying on the
// receiver matters: packets held on a sender's output still count against TCP Small Queues.
//
// usage: xmesh-delayer QUEUE SRC_IP=DELAY_S:JITTER_S:LOSS ... (a source without a rule passes)
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <string>

namespace {

using clock_type = std::chrono::steady_clock;

struct rule {
  double delay_s = 0, jitter_s = 0, loss = 0;
  clock_type::time_point last_due{};  // the latest release of this source: no reordering
};

struct held {
  uint32_t id;
  clock_type::time_point due;
  bool drop;
};

struct state {
  nfq_q_handle* queue = nullptr;
  std::map<uint32_t, rule> rules;  // by source address (network order)
  std::deque<held> waiting;        // released in due order (delays per source are near-constant)
  std::mt19937_64 rng{12345};
  uint64_t passed = 0, delayed = 0, dropped = 0;
};

volatile std::sig_atomic_t stop = 0;

int on_packet(nfq_q_handle* q, nfgenmsg*, nfq_data* nfa, void* data) {
  auto& s = *static_cast<state*>(data);
  const uint32_t id = ntohl(nfq_get_msg_packet_hdr(nfa)->packet_id);
  unsigned char* payload = nullptr;
  const int len = nfq_get_payload(nfa, &payload);
  auto it = len >= static_cast<int>(sizeof(iphdr))
                ? s.rules.find(reinterpret_cast<const iphdr*>(payload)->saddr)
                : s.rules.end();
  if (it == s.rules.end()) {
    ++s.passed;
    return nfq_set_verdict(q, id, NF_ACCEPT, 0, nullptr);
  }
  auto& r = it->second;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double delay = r.delay_s + r.jitter_s * (2 * unit(s.rng) - 1);
  auto due = clock_type::now() +
             std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(delay));
  if (due < r.last_due) due = r.last_due;
  r.last_due = due;
  const bool drop = unit(s.rng) < r.loss;
  // Keep the queue sorted by due time (insertion from the back: almost always at the end).
  auto pos = s.waiting.end();
  while (pos != s.waiting.begin() && std::prev(pos)->due > due) --pos;
  s.waiting.insert(pos, {id, due, drop});
  ++s.delayed;
  return 0;
}

bool parse_rule(const char* text, state& s) {
  const char* eq = std::strchr(text, '=');
  if (!eq) return false;
  std::string ip(text, eq);
  in_addr a{};
  rule r;
  if (inet_pton(AF_INET, ip.c_str(), &a) != 1 ||
      std::sscanf(eq + 1, "%lf:%lf:%lf", &r.delay_s, &r.jitter_s, &r.loss) != 3 || r.delay_s < 0 ||
      r.jitter_s < 0 || r.jitter_s > r.delay_s || r.loss < 0 || r.loss > 1)
    return false;
  s.rules[a.s_addr] = r;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: xmesh-delayer QUEUE SRC_IP=DELAY_S:JITTER_S:LOSS ...\n");
    return 2;
  }
  state s;
  const int queue_num = std::atoi(argv[1]);
  for (int i = 2; i < argc; ++i)
    if (!parse_rule(argv[i], s)) {
      std::fprintf(stderr, "xmesh-delayer: bad rule '%s' (SRC_IP=DELAY_S:JITTER_S:LOSS)\n",
                   argv[i]);
      return 2;
    }
  std::signal(SIGTERM, [](int) { stop = 1; });
  std::signal(SIGINT, [](int) { stop = 1; });
  nfq_handle* h = nfq_open();
  if (!h) {
    std::perror("xmesh-delayer: nfq_open");
    return 1;
  }
  s.queue = nfq_create_queue(h, static_cast<uint16_t>(queue_num), on_packet, &s);
  if (!s.queue || nfq_set_mode(s.queue, NFQNL_COPY_PACKET, sizeof(iphdr)) < 0) {
    std::fprintf(stderr, "xmesh-delayer: cannot bind queue %d (root? another delayer?)\n",
                 queue_num);
    return 1;
  }
  nfq_set_queue_maxlen(s.queue, 65536);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 32u << 20);
  const int fd = nfq_fd(h);
  std::printf("xmesh-delayer: queue %d, %zu rules\n", queue_num, s.rules.size());
  std::fflush(stdout);
  alignas(8) char buf[65536];
  while (!stop) {
    // Sleep until the next packet is due, to the microsecond (a millisecond poll() timeout
    // would add up to 1 ms per packet).
    int64_t wait_ns = 100'000'000;
    if (!s.waiting.empty())
      wait_ns = std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         s.waiting.front().due - clock_type::now())
                                         .count());
    timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                     static_cast<long>(wait_ns % 1'000'000'000)};
    pollfd p{fd, POLLIN, 0};
    if (ppoll(&p, 1, &timeout, nullptr) > 0 && (p.revents & POLLIN)) {
      // Drain what is readable now, then release what is due.
      for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) break;
        nfq_handle_packet(h, buf, static_cast<int>(n));
      }
    }
    const auto now = clock_type::now();
    while (!s.waiting.empty() && s.waiting.front().due <= now) {
      const auto& w = s.waiting.front();
      s.dropped += w.drop;
      nfq_set_verdict(s.queue, w.id, w.drop ? NF_DROP : NF_ACCEPT, 0, nullptr);
      s.waiting.pop_front();
    }
  }
  for (const auto& w : s.waiting) nfq_set_verdict(s.queue, w.id, NF_ACCEPT, 0, nullptr);
  std::printf("xmesh-delayer: stopped: %llu delayed (%llu dropped), %llu passed\n",
              static_cast<unsigned long long>(s.delayed),
              static_cast<unsigned long long>(s.dropped),
              static_cast<unsigned long long>(s.passed));
  nfq_destroy_queue(s.queue);
  nfq_close(h);
  return 0;
}
