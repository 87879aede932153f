/*
 * The steering program and its maps (see steer.h), made with raw bpf()
 * calls: the program is a dozen instructions written here, no compiler or
 * library needed.
 */
#define _GNU_SOURCE
#include "steer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <stdio.h>
#include <string.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

/* Turns taken for one connection while they fall on empty slots (a
 * member closed or taken out); then the kernel picks by hash. */
#define TRIES 4

/* The one value of the control map, shared with the program. */
struct steer_ctl {
	uint32_t next;   /* the round-robin counter, added to by the program */
	uint32_t nslots; /* slots in use, set by the daemon */
};

static int ctl_fd = -1, socks_fd = -1, handed_fd = -1, prog_fd = -1;
/* The instances' own ports (see steer_direct): a SOCKHASH from a system
 * port to the member of the instance whose port it is, the SK_LOOKUP
 * program that reads it and the link that attaches it to our network
 * namespace (it lives as long as we do). */
static int direct_fd = -1, link_fd = -1;
/* port -> what a connection to it must be addressed to, and the member's
 * slot, for its handed count */
static int direct_slot_fd = -1;
struct direct_val {
	uint32_t slot, family, any; /* any: the program bound a wildcard address */
	uint32_t addr[4];           /* else the address, network order (IPv4: addr[0]) */
};
/* Least connections: the open connections of each slot (one value of
 * STEER_SLOTS counts, mapped here: the daemon stores its counts, the
 * program adds each pick), and which slot each client address and port was
 * given (an LRU hash the daemon reads to count, steer_tuple_slot). */
static int conns_fd = -1, tuples_fd = -1;
static volatile uint64_t *conns;
/* The control map mapped here (BPF_F_MMAPABLE): nslots is written with a
 * plain store, so that an update never writes back a stale counter. */
static volatile struct steer_ctl *ctl;

static long bpf(int cmd, union bpf_attr *attr)
{
	return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

static int map_create_key(uint32_t type, uint32_t ksize, uint32_t vsize, uint32_t n, uint32_t flags)
{
	union bpf_attr a = { 0 };
	a.map_type = type;
	a.map_flags = flags;
	a.key_size = ksize;
	a.value_size = vsize;
	a.max_entries = n;
	return (int)bpf(BPF_MAP_CREATE, &a);
}

static int map_create(uint32_t type, uint32_t vsize, uint32_t n, uint32_t flags)
{
	return map_create_key(type, 4, vsize, n, flags);
}

static int map_update(int fd, uint32_t key, const void *value)
{
	union bpf_attr a = { 0 };
	a.map_fd = fd;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)value;
	a.flags = BPF_ANY;
	return bpf(BPF_MAP_UPDATE_ELEM, &a) ? errno : 0;
}

static int map_lookup(int fd, uint32_t key, void *value)
{
	union bpf_attr a = { 0 };
	a.map_fd = fd;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)value;
	return bpf(BPF_MAP_LOOKUP_ELEM, &a) ? errno : 0;
}

/* ---- a small assembler: instructions and forward jumps ---- */

static struct bpf_insn prog[1024]; /* lc's is about 450 */
static int len;

static void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	prog[len++] = (struct bpf_insn){ .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
}

static void ld_map(uint8_t dst, int fd)
{
	emit(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd);
	emit(0, 0, 0, 0, 0);
}

/* A jump whose target is set later (land). */
static int jump(uint8_t op, uint8_t dst, uint8_t src, int32_t imm)
{
	emit(BPF_JMP | op, dst, src, 0, imm);
	return len - 1;
}

static void land(int at) { prog[at].off = (int16_t)(len - at - 1); }

#define R0 BPF_REG_0
#define R1 BPF_REG_1
#define R2 BPF_REG_2
#define R3 BPF_REG_3
#define R4 BPF_REG_4
#define R6 BPF_REG_6
#define R7 BPF_REG_7
#define R8 BPF_REG_8
#define FP BPF_REG_10

/* *(u32 *)(fp - 4) = reg: the map key on the stack. */
static void key_from(uint8_t reg) { emit(BPF_STX | BPF_MEM | BPF_W, FP, reg, -4, 0); }

/* r0 = bpf_sk_select_reuseport(ctx, socks, fp - 4, 0) */
static void select_key(void)
{
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R6, 0, 0);
	ld_map(R2, socks_fd);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R3, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, -4);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, 0);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_select_reuseport);
}

/* r0 = bpf_map_lookup_elem(map, fp - 4) */
static void lookup_key(int map)
{
	ld_map(R1, map);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -4);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
}

/* The lookup program: a TCP connection to a port of direct_fd, addressed
 * as the instance's program bound it, goes to its member; any other is left
 * to the next program or the kernel's own lookup. */
static void assemble_direct(void)
{
	int pass[12], npass = 0;
	len = 0;
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R6, R1, 0, 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R2, R6, offsetof(struct bpf_sk_lookup, protocol), 0);
	pass[npass++] = jump(BPF_JNE | BPF_K, R2, 0, IPPROTO_TCP);
	emit(BPF_LDX | BPF_MEM | BPF_W, R2, R6, offsetof(struct bpf_sk_lookup, local_port), 0);
	key_from(R2);
	lookup_key(direct_slot_fd);
	pass[npass++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_9, R0, 0, 0);
	/* addressed as the program bound: a wildcard, or that very address, as
	 * the kernel's own lookup would require of its listener */
	emit(BPF_LDX | BPF_MEM | BPF_W, R1, BPF_REG_9, offsetof(struct direct_val, any), 0);
	int any = jump(BPF_JNE | BPF_K, R1, 0, 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R1, BPF_REG_9, offsetof(struct direct_val, family), 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R2, R6, offsetof(struct bpf_sk_lookup, family), 0);
	pass[npass++] = jump(BPF_JNE | BPF_X, R1, R2, 0);
	int v6 = jump(BPF_JEQ | BPF_K, R1, 0, AF_INET6);
	emit(BPF_LDX | BPF_MEM | BPF_W, R1, BPF_REG_9, offsetof(struct direct_val, addr), 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R2, R6, offsetof(struct bpf_sk_lookup, local_ip4), 0);
	pass[npass++] = jump(BPF_JNE | BPF_X, R1, R2, 0);
	int v4_ok = jump(BPF_JA, 0, 0, 0);
	land(v6);
	for (int w = 0; w < 4; w++) {
		emit(BPF_LDX | BPF_MEM | BPF_W, R1, BPF_REG_9, (int16_t)(offsetof(struct direct_val, addr) + 4 * w), 0);
		emit(BPF_LDX | BPF_MEM | BPF_W, R2, R6, (int16_t)(offsetof(struct bpf_sk_lookup, local_ip6) + 4 * w), 0);
		pass[npass++] = jump(BPF_JNE | BPF_X, R1, R2, 0);
	}
	land(any);
	land(v4_ok);
	lookup_key(direct_fd); /* a socket reference, or NULL */
	pass[npass++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R7, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R6, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R7, 0, 0);
	/* that member itself, not whichever the group's program would pick */
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, BPF_SK_LOOKUP_F_NO_REUSEPORT);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_assign);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R8, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R7, 0, 0);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_release);
	pass[npass++] = jump(BPF_JNE | BPF_K, R8, 0, 0);
	/* handed[slot] += 1 */
	emit(BPF_LDX | BPF_MEM | BPF_W, R2, BPF_REG_9, offsetof(struct direct_val, slot), 0);
	key_from(R2);
	lookup_key(handed_fd);
	pass[npass++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R1, 0, 0, 1);
	emit(BPF_STX | BPF_ATOMIC | BPF_DW, R0, R1, 0, BPF_ADD);
	for (int i = 0; i < npass; i++) land(pass[i]);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, SK_PASS);
	emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

/* The client's address and port recorded with the slot it was given
 * (r8), in the tuples map, for the daemon's count of each slot's open
 * connections (steer_tuple_slot): under lc the program chooses by it, under
 * round robin the status shows it (ACTIVE). Nothing recorded when there is
 * no packet (a queued connection moving at a close). */
static void record_tuple(void)
{
	int skip[2], nskip = 0;
	/* struct steer_tuple at fp - 32: the address from the IP header, the
	 * port from the TCP header where data begins */
	emit(BPF_ST | BPF_MEM | BPF_DW, FP, 0, -32, 0);
	emit(BPF_ST | BPF_MEM | BPF_DW, FP, 0, -24, 0);
	emit(BPF_ST | BPF_MEM | BPF_DW, FP, 0, -16, 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R1, R6, offsetof(struct sk_reuseport_md, eth_protocol), 0);
	int v6 = jump(BPF_JEQ | BPF_K, R1, 0, htons(ETH_P_IPV6));
	emit(BPF_ST | BPF_MEM | BPF_W, FP, 0, -32, AF_INET);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 12); /* saddr in struct iphdr */
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, 4);
	int addr = jump(BPF_JA, 0, 0, 0);
	land(v6);
	emit(BPF_ST | BPF_MEM | BPF_W, FP, 0, -32, AF_INET6);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 8); /* saddr in struct ipv6hdr */
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, 16);
	land(addr);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R6, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R3, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, -24);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_5, 0, 0, BPF_HDR_START_NET);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_skb_load_bytes_relative);
	skip[nskip++] = jump(BPF_JNE | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R6, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 0); /* source port in struct tcphdr */
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R3, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, -28);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, 2);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_skb_load_bytes);
	skip[nskip++] = jump(BPF_JNE | BPF_K, R0, 0, 0);
	emit(BPF_STX | BPF_MEM | BPF_W, FP, R8, -36, 0);
	ld_map(R1, tuples_fd);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -32);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R3, FP, 0, 0);
	emit(BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, -36);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, BPF_ANY);
	emit(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_update_elem);
	for (int i = 0; i < nskip; i++) land(skip[i]);
}

/* Least connections, before round robin (lc): r8 = the slot of fewest
 * counted connections among [0, nslots), first of equals; selected, its
 * count goes up by one and the program goes on at to_counted. A
 * slot that cannot be selected (its member closed) leaves the choice to
 * round robin. r9 = the counts. */
static void assemble_lc(int *to_counted, int *ncounted, int *to_rr, int *nrr)
{
	emit(BPF_ST | BPF_MEM | BPF_W, FP, 0, -4, 0);
	lookup_key(conns_fd);
	to_rr[(*nrr)++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_9, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, -1); /* the fewest so far: none yet */
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, 0);
	int done[STEER_SLOTS];
	for (int slot = 0; slot < STEER_SLOTS; slot++) {
		done[slot] = jump(BPF_JLE | BPF_K, R7, 0, slot);
		emit(BPF_LDX | BPF_MEM | BPF_DW, R1, BPF_REG_9, (int16_t)(8 * slot), 0);
		emit(BPF_JMP | BPF_JGE | BPF_X, R1, R2, 2, 0);
		emit(BPF_ALU64 | BPF_MOV | BPF_X, R2, R1, 0, 0);
		emit(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, slot);
	}
	for (int slot = 0; slot < STEER_SLOTS; slot++) land(done[slot]);
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R8, R3, 0, 0);
	key_from(R8);
	select_key();
	to_rr[(*nrr)++] = jump(BPF_JNE | BPF_K, R0, 0, 0);
	/* conns[r8 & (STEER_SLOTS - 1)] += 1 */
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R1, R8, 0, 0);
	emit(BPF_ALU64 | BPF_AND | BPF_K, R1, 0, 0, STEER_SLOTS - 1);
	emit(BPF_ALU64 | BPF_LSH | BPF_K, R1, 0, 0, 3);
	emit(BPF_ALU64 | BPF_ADD | BPF_X, R1, BPF_REG_9, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R2, 0, 0, 1);
	emit(BPF_STX | BPF_ATOMIC | BPF_DW, R1, R2, 0, BPF_ADD);
	to_counted[(*ncounted)++] = jump(BPF_JA, 0, 0, 0);
}

/* The program: ctx in r6, the slot count in r7, the slot tried in r8.
 * Whatever happens it passes: a connection with no member chosen goes to
 * one the kernel picks by hash, never dropped. */
static void assemble(bool lc)
{
	int to_out[TRIES + 4], nout = 0, to_counted[TRIES + 4], ncounted = 0, to_rr[2], nrr = 0;
	len = 0;
	emit(BPF_ALU64 | BPF_MOV | BPF_X, R6, R1, 0, 0);
	emit(BPF_ST | BPF_MEM | BPF_W, FP, 0, -4, 0);
	lookup_key(ctl_fd);
	to_out[nout++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_LDX | BPF_MEM | BPF_W, R7, R0, offsetof(struct steer_ctl, nslots), 0);
	int to_hold = jump(BPF_JEQ | BPF_K, R7, 0, 0);
	if (lc) {
		assemble_lc(to_counted, &ncounted, to_rr, &nrr);
		for (int i = 0; i < nrr; i++) land(to_rr[i]);
		emit(BPF_ST | BPF_MEM | BPF_W, FP, 0, -4, 0); /* round robin: the counter again */
		lookup_key(ctl_fd);
		to_out[nout++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	}
	/* r8 = atomic fetch-add of next, 1, modulo the slots: each connection
	 * its own turn; a turn that falls on an empty slot (a member gone or
	 * taken out) is used up and the next one is taken, so that the members
	 * left still alternate exactly. r9 = the control value. */
	emit(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_9, R0, 0, 0);
	for (int t = 0; t < TRIES; t++) {
		emit(BPF_ALU64 | BPF_MOV | BPF_K, R8, 0, 0, 1);
		emit(BPF_STX | BPF_ATOMIC | BPF_W, BPF_REG_9, R8, offsetof(struct steer_ctl, next), BPF_ADD | BPF_FETCH);
		emit(BPF_ALU | BPF_MOD | BPF_X, R8, R7, 0, 0);
		key_from(R8);
		select_key();
		to_counted[ncounted++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	}
	to_out[nout++] = jump(BPF_JA, 0, 0, 0);
	for (int i = 0; i < ncounted; i++) land(to_counted[i]);
	record_tuple();
	/* the chosen slot's count: handed[r8] += 1 */
	key_from(R8);
	lookup_key(handed_fd);
	to_out[nout++] = jump(BPF_JEQ | BPF_K, R0, 0, 0);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R1, 0, 0, 1);
	emit(BPF_STX | BPF_ATOMIC | BPF_DW, R0, R1, 0, BPF_ADD);
	to_out[nout++] = jump(BPF_JA, 0, 0, 0);
	land(to_hold);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R8, 0, 0, STEER_HOLD);
	key_from(R8);
	select_key();
	for (int i = 0; i < nout; i++) land(to_out[i]);
	emit(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, SK_PASS);
	emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

static int load(uint32_t type, uint32_t attach, char *why, size_t cap);

bool steer_load(bool lc, char *why, size_t cap)
{
	if ((conns_fd = map_create(BPF_MAP_TYPE_ARRAY, STEER_SLOTS * sizeof(uint64_t), 1, BPF_F_MMAPABLE)) < 0 ||
	    (tuples_fd = map_create_key(BPF_MAP_TYPE_LRU_HASH, sizeof(struct steer_tuple), sizeof(uint32_t), 65536, 0)) < 0 ||
	    (conns = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED, conns_fd, 0)) == MAP_FAILED) {
		snprintf(why, cap, "cannot make its maps: %s", strerror(errno));
		return false;
	}
	if ((ctl_fd = map_create(BPF_MAP_TYPE_ARRAY, sizeof(struct steer_ctl), 1, BPF_F_MMAPABLE)) < 0 ||
	    (socks_fd = map_create(BPF_MAP_TYPE_SOCKMAP, sizeof(uint64_t), STEER_SLOTS + 1, 0)) < 0 ||
	    (handed_fd = map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint64_t), STEER_SLOTS, 0)) < 0 ||
	    (ctl = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED, ctl_fd, 0)) == MAP_FAILED) {
		snprintf(why, cap, "cannot make its maps: %s", strerror(errno));
		return false;
	}
	assemble(lc);
	return (prog_fd = load(BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, why, cap)) >= 0;
}

/* The assembled program loaded: its descriptor, or -1 with why. */
static int load(uint32_t type, uint32_t attach, char *why, size_t cap)
{
	static char log[1 << 16];
	union bpf_attr a = { 0 };
	a.prog_type = type;
	a.expected_attach_type = attach;
	a.insns = (uintptr_t)prog;
	a.insn_cnt = (uint32_t)len;
	a.license = (uintptr_t)"Dual MIT/GPL";
	int fd = (int)bpf(BPF_PROG_LOAD, &a);
	if (fd >= 0) return fd;
	/* Refused: again with the verifier's log, for its last line. */
	int err = errno;
	a.log_buf = (uintptr_t)log;
	a.log_size = sizeof log;
	a.log_level = 1;
	log[0] = 0;
	if ((fd = (int)bpf(BPF_PROG_LOAD, &a)) >= 0) return fd;
	size_t n = strlen(log);
	while (n && log[n - 1] == '\n') log[--n] = 0;
	const char *last = strrchr(log, '\n');
	snprintf(why, cap, "cannot load its program: %s%s%s", strerror(err), n ? "; the verifier says: " : "", last ? last + 1 : log);
	return -1;
}

bool steer_direct(char *why, size_t cap)
{
	int netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), prog = -1;
	if (netns < 0 || (direct_fd = map_create(BPF_MAP_TYPE_SOCKHASH, sizeof(uint64_t), STEER_SLOTS, 0)) < 0 ||
	    (direct_slot_fd = map_create(BPF_MAP_TYPE_HASH, sizeof(struct direct_val), STEER_SLOTS * 4, 0)) < 0) {
		snprintf(why, cap, "%s: %s", netns < 0 ? "/proc/self/ns/net" : "its map", strerror(errno));
	} else {
		assemble_direct();
		if ((prog = load(BPF_PROG_TYPE_SK_LOOKUP, BPF_SK_LOOKUP, why, cap)) >= 0) {
			union bpf_attr a = { 0 };
			a.link_create.prog_fd = (uint32_t)prog;
			a.link_create.target_fd = (uint32_t)netns;
			a.link_create.attach_type = BPF_SK_LOOKUP;
			if ((link_fd = (int)bpf(BPF_LINK_CREATE, &a)) < 0) snprintf(why, cap, "cannot attach its program: %s", strerror(errno));
		}
	}
	if (prog >= 0) close(prog); /* the link holds it */
	if (netns >= 0) close(netns);
	return link_fd >= 0;
}

int steer_direct_put(uint16_t port, const struct sockaddr_storage *addr, int fd, uint32_t slot)
{
	struct direct_val d = { .slot = slot, .family = addr->ss_family };
	uint64_t v = (uint64_t)fd;
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
		d.any = a->sin_addr.s_addr == htonl(INADDR_ANY);
		memcpy(d.addr, &a->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
		d.any = IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr);
		memcpy(d.addr, &a->sin6_addr, 16);
	}
	int err = link_fd < 0 ? ENOTSUP : map_update(direct_slot_fd, port, &d);
	return err ? err : map_update(direct_fd, port, &v);
}

int steer_attach(int fd)
{
	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd, sizeof prog_fd) ? errno : 0;
}

int steer_put(uint32_t slot, int fd)
{
	uint64_t v = (uint64_t)fd;
	return map_update(socks_fd, slot, &v);
}

void steer_clear(uint32_t slot)
{
	union bpf_attr a = { 0 };
	a.map_fd = socks_fd;
	a.key = (uintptr_t)&slot;
	bpf(BPF_MAP_DELETE_ELEM, &a);
}

void steer_set_nslots(uint32_t n)
{
	ctl->nslots = n; /* a pick racing this sees the old count or the new */
}

bool steer_live(uint32_t slot)
{
	uint64_t cookie;
	return map_lookup(socks_fd, slot, &cookie) != ENOENT;
}

uint64_t steer_handed(uint32_t slot)
{
	uint64_t n = 0;
	map_lookup(handed_fd, slot, &n);
	return n;
}

void steer_set_conns(uint32_t slot, uint64_t n)
{
	if (conns && slot < STEER_SLOTS) conns[slot] = n;
}

uint64_t steer_conns(uint32_t slot)
{
	return conns && slot < STEER_SLOTS ? conns[slot] : 0;
}

bool steer_tuple_slot(const struct steer_tuple *t, uint32_t *slot)
{
	union bpf_attr a = { 0 };
	a.map_fd = tuples_fd;
	a.key = (uintptr_t)t;
	a.value = (uintptr_t)slot;
	return tuples_fd >= 0 && bpf(BPF_MAP_LOOKUP_ELEM, &a) == 0;
}
