// SPDX-License-Identifier: GPL-2.0
/*
 * "tandem": the congestion control of a trunk's subflows, as a BPF struct_ops program
 * (Linux 5.6 and later, with BTF). Built by scripts/tandem-cc.sh build, registered with the
 * kernel by scripts/tandem-cc.sh register; trunk.congestion = auto moves the subflows of a
 * trunk whose min RTT reaches 80 ms to it (LONG_PATH_RTT_MS in src/common/congestion.ts; the
 * bench's 50 ms link keeps bbr, where short replies were slower on this one),
 * trunk.congestion = tandem sets it on every path.
 *
 * Why: a trunk's subflows share one bottleneck, and the trunk's rate controller
 * (src/core/rate-controller.ts) already decides how fast they send together: it paces each
 * subflow (SO_MAX_PACING_RATE) and caps the bytes the trunk keeps in flight at about one
 * bandwidth-delay product. Under it, each subflow's own congestion control only got in the way.
 * Measured on a 600 ms, 1 % loss, 100 Mbit/s link with bbr subflows (status --json every
 * 0.5 s): a random loss while the trunk ramps up clamps bbr's window to what is in flight, and
 * it climbs back one round trip at a time; every 10 s bbr's PROBE_RTT holds a subflow's window
 * at 4 segments for about a second, and subflows that were last refreshed together enter it
 * together (six of eight at once: the trunk fell from 97 to 30 Mbit/s for a second and a half).
 *
 * So this one leaves the sending rate to the trunk:
 *   - a loss is not congestion: ssthresh keeps the window (the trunk's own estimate reacts to
 *     what the path delivers), and TCP still retransmits every lost segment;
 *   - the window is never below the trunk's first flight per subflow (256 KiB) nor below what
 *     the trunk's pace lets out in a smoothed RTT, grows like slow start while it is what holds
 *     the socket back; it never shrinks, and after a retransmission timeout (which drops
 *     it to 1) it is given back at the next ACK;
 *   - the socket paces at the trunk's SO_MAX_PACING_RATE once the trunk set one, higher or
 *     lower than its window would give (the trunk knows the path, the window only what this
 *     socket was given: a subflow that carried only short replies kept a window of about 100
 *     segments, and paced at twice that per RTT a 1 MB reply took 270 ms to leave a 600 ms,
 *     100 Mbit/s link, when the trunk let it out at once); before that, at twice its window
 *     per RTT, as Linux does in slow start.
 * A subflow on this algorithm must therefore only ever be used under the trunk's rate
 * controller, which every Tandem trunk runs: a socket without it would have no congestion
 * control at all.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

/*
 * The least window, in bytes: the trunk's first flight per subflow (its in-flight floor while a
 * path is in STARTUP, STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES in src/core/rate-controller.ts).
 * The trunk caps what all subflows keep in flight together and paces them; a window below its
 * share only cut the first flight short: subflows that had carried only short replies kept a
 * window of about 100 segments, and a 1 MB reply whose first bytes went twice did not fit in
 * one flight (a round trip more).
 */
#define TANDEM_MIN_WINDOW_BYTES (256 * 1024)

/* Per-socket state, in the socket's icsk_ca_priv area. */
struct tandem_ca {
	__u32 cwnd; /* the largest window this socket was given, in segments */
};

static __always_inline struct tcp_sock *tcp_sk(const struct sock *sk)
{
	return (struct tcp_sock *)sk;
}

static __always_inline struct tandem_ca *ca_of(const struct sock *sk)
{
	return (void *)((struct inet_connection_sock *)sk)->icsk_ca_priv;
}

SEC("struct_ops")
void BPF_PROG(tandem_init, struct sock *sk)
{
	ca_of(sk)->cwnd = tcp_sk(sk)->snd_cwnd;
	/* Pace from the first segment (as bbr does): the kernel then honours sk_pacing_rate. */
	sk->sk_pacing_status = SK_PACING_NEEDED;
}

SEC("struct_ops")
__u32 BPF_PROG(tandem_ssthresh, struct sock *sk)
{
	return tcp_sk(sk)->snd_cwnd;
}

SEC("struct_ops")
void BPF_PROG(tandem_cong_control, struct sock *sk, __u32 ack, int flag,
	      const struct rate_sample *rs)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct tandem_ca *ca = ca_of(sk);
	__u32 cwnd = ca->cwnd;
	__u32 in_flight = tp->packets_out - tp->sacked_out - tp->lost_out + tp->retrans_out;
	__u64 srtt_us = tp->srtt_us >> 3;

	if (tp->snd_cwnd > cwnd)
		cwnd = tp->snd_cwnd;
	if (tp->mss_cache > 0 && cwnd < TANDEM_MIN_WINDOW_BYTES / tp->mss_cache)
		cwnd = TANDEM_MIN_WINDOW_BYTES / tp->mss_cache;
	/*
	 * Grow like slow start while the window is what holds the socket back: as Linux judges it
	 * in slow start (tcp_is_cwnd_limited), while the window is below twice the most segments
	 * the socket had out in its last window. Not by the segments in flight at this ACK: ACKs
	 * arrive in bursts, and the segments the first ACK of a burst lets out wait for the pace,
	 * so at every later ACK of the burst the socket looked limited by something else. Judged
	 * so, the window of a 600 ms, 1 % path's subflows grew from 181 to 217 segments over four
	 * round trips of a 10 MB reply, every subflow sending exactly its window (ss -tin).
	 */
	if (rs->acked_sacked > 0 &&
	    (in_flight + rs->acked_sacked >= cwnd || cwnd < 2 * tp->max_packets_out))
		cwnd += rs->acked_sacked;
	/*
	 * Never below what the trunk's pace lets out in a round trip, once it set one: the trunk's
	 * in-flight cap holds the total, and a window grown only by what this socket carried held
	 * the first flight of a reply under it. Measured on a 600 ms, 1 % path after 1 MB replies:
	 * eight subflows' windows of 256-330 KiB let 2.6 MB of a 10 MB reply out in its first round
	 * trip while the trunk's cap allowed 6.9 MB.
	 */
	if (sk->sk_max_pacing_rate != ~0UL && tp->mss_cache > 0 && srtt_us > 0) {
		__u64 paced = (__u64)sk->sk_max_pacing_rate * srtt_us / 1000000 / tp->mss_cache;

		if (paced > cwnd)
			cwnd = paced;
	}
	if (cwnd > tp->snd_cwnd_clamp)
		cwnd = tp->snd_cwnd_clamp;
	ca->cwnd = cwnd;
	tp->snd_cwnd = cwnd;
	/*
	 * The trunk's pace, once it set one (SO_MAX_PACING_RATE), is the pace: the kernel applies
	 * that cap only when the option is set, and a congestion control that writes the pacing
	 * rate must apply it itself (bbr does), or its next ACK undoes the trunk's decision. Before
	 * the trunk decides, slow start's pace: twice the window per RTT.
	 */
	if (sk->sk_max_pacing_rate != ~0UL)
		sk->sk_pacing_rate = sk->sk_max_pacing_rate;
	else if (srtt_us > 0)
		sk->sk_pacing_rate = (__u64)tp->mss_cache * 1000000ULL * 2 * cwnd / srtt_us;
}

SEC("struct_ops")
__u32 BPF_PROG(tandem_undo_cwnd, struct sock *sk)
{
	return tcp_sk(sk)->snd_cwnd;
}

SEC(".struct_ops")
struct tcp_congestion_ops tandem = {
	.init = (void *)tandem_init,
	.ssthresh = (void *)tandem_ssthresh,
	.cong_control = (void *)tandem_cong_control,
	.undo_cwnd = (void *)tandem_undo_cwnd,
	.name = "tandem",
};
