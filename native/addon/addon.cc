// The Node side of the translation core: the C layouts themselves (so the
// golden test holds C and TypeScript to the same bytes), the inflight
// recovery the harness runs when it cleans up after an application, and the
// kernel calls that snapshot and restore an application's IPC objects.
#include <napi.h>
#include <cerrno>
#include <cmath>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>
#include <unistd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/msg.h>

extern "C" {
#include "../../tables/schema.h"
#include "../core/inflight.h"
#include "../core/procinfo.h"
#include "../core/tablecheck.h"
#include "../core/tablespace.h"
#include "../core/lockcheck.h"
#include "../core/snapshot.h"
}

namespace {

// A thrown Error with the errno's name as code (defined below).
Napi::Error sys_error(Napi::Env env, const std::string &what, int err);

// The harness runs outside the shim: libc's calls are the kernel's.
const struct kernel_ops libc_ops = { semget, semctl, shmget, shmctl, msgget, msgctl };

Napi::Buffer<uint8_t> bytes(Napi::Env env, const uint8_t *p, size_t n)
{
	return Napi::Buffer<uint8_t>::Copy(env, p, n);
}

uint32_t u32(const Napi::Value &v) { return v.As<Napi::Number>().Uint32Value(); }
uint64_t u64(const Napi::Value &v) { return (uint64_t)v.As<Napi::Number>().DoubleValue(); }

std::string aid_arg(const Napi::CallbackInfo &info, size_t i)
{
	std::string aid = info[i].As<Napi::String>().Utf8Value();
	if (aid.size() > APPSHOT_AID_MAX)
		throw Napi::RangeError::New(info.Env(), "AID longer than 63 bytes");
	return aid;
}

Napi::Value FwdKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[FWD_KEY_MAX];
	size_t n = fwd_key(b, aid.data(), aid.size(), (uint8_t)u32(info[1]), u32(info[2]));
	return bytes(info.Env(), b, n);
}

Napi::Value FwdVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct fwd_val v = { u32(o.Get("srid")), u32(o.Get("vkey")), u32(o.Get("skey")),
			     u32(o.Get("creator")), u64(o.Get("createdMs")) };
	uint8_t b[FWD_VAL_LEN];
	fwd_val_put(b, &v);
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcKey(const Napi::CallbackInfo &info)
{
	uint8_t b[PROC_KEY_LEN];
	proc_key(b, u32(info[0]));
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value ProcVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[PROC_VAL_MAX];
	return bytes(info.Env(), b, proc_val(b, u64(info[0]), aid.data(), aid.size()));
}

Napi::Value FwdValRemoved(const Napi::CallbackInfo &info)
{
	Napi::Buffer<uint8_t> b = info[0].As<Napi::Buffer<uint8_t>>();
	if (b.Length() != FWD_VAL_LEN) throw Napi::RangeError::New(info.Env(), "a fwd value is 24 bytes");
	struct fwd_val v;
	fwd_val_get(&v, b.Data());
	return Napi::Boolean::New(info.Env(), fwd_val_removed(&v));
}

Napi::Value RevKey(const Napi::CallbackInfo &info)
{
	uint8_t b[REV_KEY_LEN];
	rev_key(b, u32(info[0]), (uint8_t)u32(info[1]), u32(info[2]));
	return bytes(info.Env(), b, sizeof b);
}

Napi::Value RevVal(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 1);
	uint8_t b[REV_VAL_MAX];
	return bytes(info.Env(), b, rev_val(b, u32(info[0]), aid.data(), aid.size()));
}

Napi::Value AllocKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[APPSHOT_AID_MAX + 2];
	return bytes(info.Env(), b, alloc_key(b, aid.data(), aid.size(), (uint8_t)u32(info[1])));
}

Napi::Value PathKey(const Napi::CallbackInfo &info)
{
	std::string aid = aid_arg(info, 0);
	uint8_t b[PATH_KEY_MAX];
	return bytes(info.Env(), b, path_key(b, aid.data(), aid.size(), (uint16_t)u32(info[1])));
}

Napi::Value PathVal(const Napi::CallbackInfo &info)
{
	std::string from = info[0].As<Napi::String>().Utf8Value(), to = info[1].As<Napi::String>().Utf8Value();
	if (from.size() >= APPSHOT_PATH_MAX || to.size() >= APPSHOT_PATH_MAX)
		throw Napi::RangeError::New(info.Env(), "a redirected path is shorter than PATH_MAX");
	std::vector<uint8_t> b(PATH_VAL_MAX);
	return bytes(info.Env(), b.data(), path_val(b.data(), from.data(), from.size(), to.data(), to.size()));
}

Napi::Value AppVal(const Napi::CallbackInfo &info)
{
	Napi::Object o = info[0].As<Napi::Object>();
	struct app_val v = { (uint8_t)u32(o.Get("schema")), (uint8_t)u32(o.Get("state")),
			     (uint16_t)u32(o.Get("flags")), u32(o.Get("harnessSpid")),
			     u64(o.Get("harnessStart")), u64(o.Get("createdMs")), u64(o.Get("endedMs")) };
	uint8_t b[APP_VAL_FIXED];
	app_val_put(b, &v);
	return bytes(info.Env(), b, sizeof b);
}

// flock(fd, operation): the open lock's flock, retried on EINTR; throws
// with the errno. Here rather than through koffi: opening the tables is on
// every command's path, and loading koffi costs more than the call.
Napi::Value Flock(const Napi::CallbackInfo &info)
{
	int fd = info[0].As<Napi::Number>().Int32Value(), op = info[1].As<Napi::Number>().Int32Value();
	while (flock(fd, op) != 0)
		if (errno != EINTR) throw sys_error(info.Env(), "flock", errno);
	return info.Env().Undefined();
}

// peerCred(fd): SO_PEERCRED of a connected Unix socket, { pid, uid, gid }
// of the process that listened (or connected) at the other end.
Napi::Value PeerCred(const Napi::CallbackInfo &info)
{
	int fd = info[0].As<Napi::Number>().Int32Value();
	struct ucred cr = {};
	socklen_t len = sizeof cr;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) throw sys_error(info.Env(), "getsockopt SO_PEERCRED", errno);
	Napi::Object o = Napi::Object::New(info.Env());
	o.Set("pid", (double)cr.pid);
	o.Set("uid", (double)cr.uid);
	o.Set("gid", (double)cr.gid);
	return o;
}

// checkTables(path, whole): null when the tables file is sound, else what
// is damaged in it; throws with the errno when it cannot be read. Node's
// lmdb follows every page number in the file, so this runs before it opens.
Napi::Value CheckTables(const Napi::CallbackInfo &info)
{
	std::string path = info[0].As<Napi::String>().Utf8Value();
	char why[256] = "";
	int rc = tablecheck_file(path.c_str(), info[1].ToBoolean() ? TABLECHECK_ALL : TABLECHECK_TOP, why, sizeof why);
	if (rc == TABLECHECK_DAMAGED) return Napi::String::New(info.Env(), why);
	if (rc) throw sys_error(info.Env(), "cannot read " + path, rc);
	return info.Env().Null();
}

// reserveTables(home): the files of new tables, their first blocks
// allocated (native/core/tablespace.h); throws with the errno (ENOSPC on a
// full disk) having removed what it made. unreserveTables(home) removes them.
Napi::Value ReserveTables(const Napi::CallbackInfo &info)
{
	std::string home = info[0].As<Napi::String>().Utf8Value();
	char why[512] = "";
	int rc = tabledb_reserve(home.c_str(), why, sizeof why);
	if (rc) {
		Napi::Error e = Napi::Error::New(info.Env(), why);
		if (const char *name = strerrorname_np(rc)) e.Set("code", name);
		throw e;
	}
	return info.Env().Undefined();
}

Napi::Value UnreserveTables(const Napi::CallbackInfo &info)
{
	tabledb_unreserve(info[0].As<Napi::String>().Utf8Value().c_str());
	return info.Env().Undefined();
}

// checkLock(path[, fd]): null when LMDB's lock file at path is sound (or,
// without fd, unused and so rebuilt by LMDB at open), { repaired: what }
// when garbage reader slots were cleared, { damaged: what, inUse } when its
// header is garbage (inUse: other processes use the tables); throws with the errno. Without fd, only before this process
// opens the environment (closing a descriptor would drop its LMDB locks).
Napi::Value CheckLock(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string path = info[0].As<Napi::String>().Utf8Value();
	char what[512] = "";
	int rc = info.Length() > 1 && info[1].IsNumber()
			 ? lockcheck_fd(info[1].As<Napi::Number>().Int32Value(), path.c_str(), what, sizeof what)
			 : lockcheck_file(path.c_str(), what, sizeof what);
	if (rc == LOCKCHECK_OK) return env.Null();
	if (rc > LOCKCHECK_REPAIRED) throw sys_error(env, "cannot check " + path, rc);
	Napi::Object r = Napi::Object::New(env);
	r.Set(rc == LOCKCHECK_REPAIRED ? "repaired" : "damaged", what);
	if (rc < 0) r.Set("inUse", rc == LOCKCHECK_DAMAGED_IN_USE);
	return r;
}

Napi::Value PortId(const Napi::CallbackInfo &info)
{
	uint32_t proto = info[0].As<Napi::Number>().Uint32Value();
	uint32_t port = info[1].As<Napi::Number>().Uint32Value();
	return Napi::Number::New(info.Env(), port_id(proto, (uint16_t)port));
}

Napi::Value AidValid(const Napi::CallbackInfo &info)
{
	std::string aid = info[0].As<Napi::String>().Utf8Value();
	return Napi::Boolean::New(info.Env(), aid_valid(aid.data(), aid.size()));
}

struct MappedCtx {
	Napi::Env env;
	Napi::Function fn;
};

int mapped_by_js(void *ctx, uint8_t type, uint32_t srid)
{
	auto *c = static_cast<MappedCtx *>(ctx);
	Napi::Value r = c->fn.Call({ Napi::Number::New(c->env, type), Napi::Number::New(c->env, srid) });
	return r.ToBoolean().Value() ? 1 : 0;
}

// One inflight record per home, opened once; the harness may run worker
// threads, which share this module's statics.
std::mutex inflight_mutex;
std::map<std::string, inflight_file> inflight_files;

inflight_file &inflight_for(Napi::Env env, const std::string &home)
{
	auto it = inflight_files.find(home);
	if (it != inflight_files.end()) return it->second;
	inflight_file f = {};
	int rc = inflight_open(&f, home.c_str());
	if (rc) throw sys_error(env, "cannot open " + home + "/" + APPSHOT_INFLIGHT_FILE, rc);
	return inflight_files.emplace(home, f).first->second;
}

// recoverInflight(home, isMapped(type, srid) => boolean): string | null.
// The caller holds the write lock (runs this inside a write transaction).
Napi::Value RecoverInflight(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	inflight_file &f = inflight_for(env, home);
	MappedCtx ctx{ env, info[1].As<Napi::Function>() };
	char report[512];
	int removed = inflight_recover(&f, &libc_ops, mapped_by_js, &ctx, report, sizeof report);
	return removed ? Napi::Value(Napi::String::New(env, report)) : env.Null();
}

// ---- Snapshot and restore: kernel calls on system IDs ----

// A thrown Error names the call and the object; code and errno say what the
// kernel said, as Node's own system errors do (errno positive here).
Napi::Error sys_error(Napi::Env env, const std::string &what, int err)
{
	Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
	if (const char *name = strerrorname_np(err)) e.Set("code", name);
	e.Set("errno", (double)err);
	return e;
}

// An integer argument in [lo, hi]: a fraction or NaN would be truncated
// into some other object's ID or some other offset.
double int_arg(const Napi::CallbackInfo &info, size_t i, const char *name, double lo, double hi)
{
	if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
	double d = info[i].As<Napi::Number>().DoubleValue();
	if (!(d >= lo && d <= hi) || std::floor(d) != d)
		throw Napi::RangeError::New(info.Env(), std::string(name) + " is not an integer in range: " + std::to_string(d));
	return d;
}

const double MAX_SAFE = 9007199254740991.0; // 2^53 - 1, JavaScript's largest exact integer

int id_arg(const Napi::CallbackInfo &info, size_t i, const char *name = "id")
{
	return (int)int_arg(info, i, name, 0, INT_MAX);
}

uint32_t crc_arg(const Napi::CallbackInfo &info, size_t i)
{
	return info.Length() > i && !info[i].IsUndefined() ? (uint32_t)int_arg(info, i, "crc", 0, UINT32_MAX) : 0;
}

Napi::Uint8Array bytes_arg(Napi::Env env, const Napi::Value &v, const char *name)
{
	if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
		throw Napi::TypeError::New(env, std::string(name) + " must be a Buffer");
	return v.As<Napi::Uint8Array>();
}

uint8_t ipc_type_arg(const Napi::CallbackInfo &info, size_t i)
{
	std::string t = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
	if (t == "sem") return RT_SEM;
	if (t == "shm") return RT_SHM;
	if (t == "msg") return RT_MSG;
	throw Napi::TypeError::New(info.Env(), "type must be 'sem', 'shm' or 'msg'");
}

// "shmToFd on shared memory segment 5", for messages.
std::string on(const char *call, uint8_t type, int id)
{
	return std::string(call) + " on " + sysv_noun(type) + " " + std::to_string(id);
}

// crc32c(buf, crc = 0): crc continued over buf.
Napi::Value Crc32c(const Napi::CallbackInfo &info)
{
	Napi::Uint8Array b = bytes_arg(info.Env(), info[0], "buf");
	return Napi::Number::New(info.Env(), crc32c(crc_arg(info, 1), b.Data(), b.ByteLength()));
}

typedef int (*shm_copy_fn)(int fd, int shmid, uint64_t offset, uint64_t len, uint32_t *crc);

// (fd, shmid, offset, len, crc) => crc continued over the bytes copied.
Napi::Value ShmCopy(const Napi::CallbackInfo &info, const char *call, shm_copy_fn copy)
{
	int fd = id_arg(info, 0, "fd");
	int shmid = id_arg(info, 1, "shmid");
	uint64_t offset = (uint64_t)int_arg(info, 2, "offset", 0, MAX_SAFE);
	uint64_t len = (uint64_t)int_arg(info, 3, "len", 0, MAX_SAFE);
	uint32_t crc = crc_arg(info, 4);
	int rc = copy(fd, shmid, offset, len, &crc);
	if (rc) throw sys_error(info.Env(), on(call, RT_SHM, shmid) + " (bytes " + std::to_string(offset) + " to " +
						    std::to_string(offset + len) + ", fd " + std::to_string(fd) + ")", rc);
	return Napi::Number::New(info.Env(), crc);
}

Napi::Value ShmToFd(const Napi::CallbackInfo &info) { return ShmCopy(info, "shmToFd", snap_shm_to_fd); }
Napi::Value FdToShm(const Napi::CallbackInfo &info) { return ShmCopy(info, "fdToShm", snap_fd_to_shm); }

struct Message {
	long type;
	std::string data;
};

// Called from C: nothing may be thrown through it.
int collect_message(void *ctx, long mtype, const void *data, size_t len)
{
	try {
		static_cast<std::vector<Message> *>(ctx)->push_back({ mtype, std::string((const char *)data, len) });
		return 0;
	} catch (const std::bad_alloc &) {
		return ENOMEM;
	}
}

// msgCopyAll(msqid): the queue's messages in order, left in the queue.
Napi::Value MsgCopyAll(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int msqid = id_arg(info, 0, "msqid");
	std::vector<Message> msgs;
	int rc = snap_msg_copy(msqid, collect_message, &msgs, nullptr);
	if (rc) throw sys_error(env, on("msgCopyAll", RT_MSG, msqid), rc);
	Napi::Array out = Napi::Array::New(env, msgs.size());
	for (size_t i = 0; i < msgs.size(); i++) {
		Napi::Object m = Napi::Object::New(env);
		m.Set("type", Napi::Number::New(env, (double)msgs[i].type));
		m.Set("data", bytes(env, (const uint8_t *)msgs[i].data.data(), msgs[i].data.size()));
		out.Set((uint32_t)i, m);
	}
	return out;
}

// msgSendAll(msqid, [{ type, data }]): every argument is checked before the
// first send, so a bad one does not leave the queue half filled.
Napi::Value MsgSendAll(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int msqid = id_arg(info, 0, "msqid");
	if (!info[1].IsArray()) throw Napi::TypeError::New(env, "messages must be an array");
	Napi::Array arr = info[1].As<Napi::Array>();
	std::vector<std::pair<long, Napi::Uint8Array>> msgs;
	for (uint32_t i = 0; i < arr.Length(); i++) {
		Napi::Value v = arr.Get(i);
		if (!v.IsObject()) throw Napi::TypeError::New(env, "messages[" + std::to_string(i) + "] must be an object");
		Napi::Object o = v.As<Napi::Object>();
		Napi::Value t = o.Get("type");
		double type = t.IsNumber() ? t.As<Napi::Number>().DoubleValue() : 0;
		if (!(type >= 1 && type <= MAX_SAFE) || std::floor(type) != type)
			throw Napi::RangeError::New(env, "messages[" + std::to_string(i) + "].type must be a positive integer");
		msgs.emplace_back((long)type, bytes_arg(env, o.Get("data"), "data"));
	}
	for (size_t i = 0; i < msgs.size(); i++) {
		int rc = snap_msg_send(msqid, msgs[i].first, msgs[i].second.Data(), msgs[i].second.ByteLength());
		if (rc == EAGAIN)
			throw sys_error(env, on("msgSendAll", RT_MSG, msqid) + ": the queue is full after " + std::to_string(i) +
						     " of " + std::to_string(msgs.size()) + " messages", rc);
		if (rc)
			throw sys_error(env, on("msgSendAll", RT_MSG, msqid) + " (message " + std::to_string(i) + ", " +
						     std::to_string(msgs[i].second.ByteLength()) + " bytes)", rc);
	}
	return env.Undefined();
}

union ipc_ds {
	struct semid_ds sem;
	struct shmid_ds shm;
	struct msqid_ds msg;
};

struct ipc_perm &perm_of(uint8_t type, ipc_ds &ds)
{
	return type == RT_SEM ? ds.sem.sem_perm : type == RT_SHM ? ds.shm.shm_perm : ds.msg.msg_perm;
}

void ipc_ctl(Napi::Env env, const char *call, uint8_t type, int id, int cmd, ipc_ds &ds)
{
	if (sysv_ctl(&libc_ops, type, id, cmd, &ds) != 0) throw sys_error(env, on(call, type, id), errno);
}

// semctl's fourth argument, which the caller must declare.
union semun_arg {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

// semGetAll(semid): every semaphore's value.
Napi::Value SemGetAll(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int semid = id_arg(info, 0, "semid");
	ipc_ds ds;
	ipc_ctl(env, "semGetAll", RT_SEM, semid, IPC_STAT, ds);
	std::vector<unsigned short> vals(ds.sem.sem_nsems);
	semun_arg arg;
	arg.array = vals.data();
	if (semctl(semid, 0, GETALL, arg) != 0) throw sys_error(env, on("semGetAll", RT_SEM, semid), errno);
	Napi::Array out = Napi::Array::New(env, vals.size());
	for (size_t i = 0; i < vals.size(); i++) out.Set((uint32_t)i, Napi::Number::New(env, vals[i]));
	return out;
}

// semSetAll(semid, values): one value for each semaphore of the set.
Napi::Value SemSetAll(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	int semid = id_arg(info, 0, "semid");
	if (!info[1].IsArray()) throw Napi::TypeError::New(env, "values must be an array");
	Napi::Array arr = info[1].As<Napi::Array>();
	ipc_ds ds;
	ipc_ctl(env, "semSetAll", RT_SEM, semid, IPC_STAT, ds);
	if (arr.Length() != ds.sem.sem_nsems)
		throw sys_error(env, on("semSetAll", RT_SEM, semid) + ": " + std::to_string(arr.Length()) + " values for " +
					     std::to_string(ds.sem.sem_nsems) + " semaphores", EINVAL);
	std::vector<unsigned short> vals(arr.Length());
	for (uint32_t i = 0; i < arr.Length(); i++) {
		Napi::Value v = arr.Get(i);
		if (!v.IsNumber()) throw Napi::TypeError::New(env, "values must be numbers");
		double d = v.As<Napi::Number>().DoubleValue();
		if (!(d >= 0 && d <= USHRT_MAX) || std::floor(d) != d)
			throw Napi::RangeError::New(env, "values[" + std::to_string(i) + "] is not a semaphore value");
		vals[i] = (unsigned short)d;
	}
	semun_arg arg;
	arg.array = vals.data();
	if (semctl(semid, 0, SETALL, arg) != 0) throw sys_error(env, on("semSetAll", RT_SEM, semid), errno);
	return env.Undefined();
}

// ipcStat(type, id): the fields a restore needs; those of other families are 0.
Napi::Value IpcStat(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	uint8_t type = ipc_type_arg(info, 0);
	int id = id_arg(info, 1);
	ipc_ds ds;
	ipc_ctl(env, "ipcStat", type, id, IPC_STAT, ds);
	const struct ipc_perm &p = perm_of(type, ds);
	double size = 0, nattch = 0, qbytes = 0, qnum = 0, nsems = 0;
	unsigned mode = p.mode & 0777;
	if (type == RT_SEM) nsems = (double)ds.sem.sem_nsems;
	if (type == RT_SHM) {
		size = (double)ds.shm.shm_segsz;
		nattch = (double)ds.shm.shm_nattch;
		mode |= p.mode & (SHM_DEST | SHM_LOCKED);
	}
	if (type == RT_MSG) {
		qbytes = (double)ds.msg.msg_qbytes;
		qnum = (double)ds.msg.msg_qnum;
	}
	Napi::Object o = Napi::Object::New(env);
	o.Set("key", Napi::Number::New(env, (uint32_t)p.__key));
	o.Set("uid", Napi::Number::New(env, p.uid));
	o.Set("gid", Napi::Number::New(env, p.gid));
	o.Set("cuid", Napi::Number::New(env, p.cuid));
	o.Set("cgid", Napi::Number::New(env, p.cgid));
	o.Set("mode", Napi::Number::New(env, mode));
	o.Set("size", Napi::Number::New(env, size));
	o.Set("nattch", Napi::Number::New(env, nattch));
	o.Set("qbytes", Napi::Number::New(env, qbytes));
	o.Set("qnum", Napi::Number::New(env, qnum));
	o.Set("nsems", Napi::Number::New(env, nsems));
	return o;
}

// ipcSetPerm(type, id, { uid, gid, mode, qbytes? }): IPC_SET over the
// object's own IPC_STAT, so what is not given keeps its value.
Napi::Value IpcSetPerm(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	uint8_t type = ipc_type_arg(info, 0);
	int id = id_arg(info, 1);
	if (!info[2].IsObject()) throw Napi::TypeError::New(env, "perm must be an object");
	Napi::Object o = info[2].As<Napi::Object>();
	ipc_ds ds;
	ipc_ctl(env, "ipcSetPerm", type, id, IPC_STAT, ds);
	struct ipc_perm &p = perm_of(type, ds);
	auto field = [&](const char *name, double hi) {
		Napi::Value v = o.Get(name);
		double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
		if (!(d >= 0 && d <= hi) || std::floor(d) != d)
			throw Napi::RangeError::New(env, std::string("perm.") + name + " is not an integer in range");
		return d;
	};
	p.uid = (uid_t)field("uid", UINT32_MAX);
	p.gid = (gid_t)field("gid", UINT32_MAX);
	p.mode = (unsigned short)((p.mode & ~0777u) | ((unsigned)field("mode", 0xffff) & 0777));
	if (type == RT_MSG && !o.Get("qbytes").IsUndefined()) ds.msg.msg_qbytes = (msglen_t)field("qbytes", MAX_SAFE);
	ipc_ctl(env, "ipcSetPerm", type, id, IPC_SET, ds);
	return env.Undefined();
}

// ipcRemove(type, id): IPC_RMID.
Napi::Value IpcRemove(const Napi::CallbackInfo &info)
{
	uint8_t type = ipc_type_arg(info, 0);
	int id = id_arg(info, 1);
	if (sysv_rmid(&libc_ops, type, id) != 0) throw sys_error(info.Env(), on("ipcRemove", type, id), errno);
	return info.Env().Undefined();
}

std::string key_text(uint32_t key)
{
	char b[32];
	snprintf(b, sizeof b, key ? "key 0x%08x" : "IPC_PRIVATE", key);
	return b;
}

// ipcCreate(home, aid, type, key, size, mode): a new object, covered by the
// home's inflight record until inflightClear. The caller holds the write
// lock (is inside its write transaction) from before this call to its commit.
Napi::Value IpcCreate(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (!info[0].IsString()) throw Napi::TypeError::New(env, "home must be a string");
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::string aid = aid_arg(info, 1);
	uint8_t type = ipc_type_arg(info, 2);
	uint32_t key = (uint32_t)int_arg(info, 3, "key", 0, UINT32_MAX);
	uint64_t size = (uint64_t)int_arg(info, 4, "size", 0, type == RT_SEM ? INT_MAX : MAX_SAFE);
	int mode = (int)int_arg(info, 5, "mode", 0, 0xffff) & 0777;
	std::lock_guard<std::mutex> hold(inflight_mutex);
	inflight_file &f = inflight_for(env, home);
	// The record covers one object: a second would leave the first to leak
	// if this process died before the commit.
	if (f.token)
		throw Napi::Error::New(env, "ipcCreate: the inflight record of " + home +
						    " still covers the object created before: commit its rows and call inflightClear first");
	inflight_begin(&f, getpid(), aid.c_str(), type, key);
	int id = sysv_get(&libc_ops, type, (key_t)key, size, IPC_CREAT | IPC_EXCL | mode);
	if (id < 0) {
		int e = errno;
		inflight_clear(&f);
		throw sys_error(env, std::string("ipcCreate of a ") + sysv_noun(type) + " with " + key_text(key), e);
	}
	inflight_created(&f, (uint32_t)id);
	return Napi::Number::New(env, id);
}

// inflightClear(home): after the commit that recorded the object.
Napi::Value InflightClear(const Napi::CallbackInfo &info)
{
	std::string home = info[0].As<Napi::String>().Utf8Value();
	std::lock_guard<std::mutex> hold(inflight_mutex);
	auto it = inflight_files.find(home);
	if (it != inflight_files.end() && it->second.token) inflight_clear(&it->second);
	return info.Env().Undefined();
}

// seek(fd, offset): lseek(SEEK_SET), for reading past a section Node would
// otherwise have to read.
Napi::Value Seek(const Napi::CallbackInfo &info)
{
	int fd = id_arg(info, 0, "fd");
	double off = info[1].As<Napi::Number>().DoubleValue();
	if (lseek(fd, (off_t)off, SEEK_SET) < 0) throw sys_error(info.Env(), "lseek", errno);
	return info.Env().Undefined();
}

// portFree(proto, port): whether the kernel lets a socket of that protocol
// bind the port on every address (dual stack) right now.
Napi::Value PortFree(const Napi::CallbackInfo &info)
{
	uint32_t proto = info[0].As<Napi::Number>().Uint32Value();
	int port = int_arg(info, 1, "port", 1, 65535);
	int type = proto == PORT_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
	int fd = socket(AF_INET6, type | SOCK_CLOEXEC, 0), rc;
	if (fd >= 0) {
		int off = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
		struct sockaddr_in6 a = {};
		a.sin6_family = AF_INET6;
		a.sin6_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&a, sizeof a);
	} else {
		// No IPv6 here: the IPv4 wildcard says the same.
		fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
		if (fd < 0) throw sys_error(info.Env(), "socket", errno);
		struct sockaddr_in a = {};
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)port);
		rc = bind(fd, (struct sockaddr *)&a, sizeof a);
	}
	close(fd);
	return Napi::Boolean::New(info.Env(), rc == 0);
}

void collect_attachment(void *arg, uint32_t shmid, int writable)
{
	static_cast<std::vector<std::pair<uint32_t, bool>> *>(arg)->emplace_back(shmid, writable != 0);
}

// shmAttachments(pid): the SysV segments the process has attached, one
// entry per attachment, as the shim counts them (proc_shm_each); null if
// the process is gone or its maps are not ours to read.
Napi::Value ShmAttachments(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::vector<std::pair<uint32_t, bool>> found;
	if (proc_shm_each((pid_t)int_arg(info, 0, "pid", 1, INT_MAX), collect_attachment, &found) != 0) return env.Null();
	Napi::Array out = Napi::Array::New(env, found.size());
	for (size_t i = 0; i < found.size(); i++) {
		Napi::Object a = Napi::Object::New(env);
		a.Set("shmid", Napi::Number::New(env, found[i].first));
		a.Set("writable", Napi::Boolean::New(env, found[i].second));
		out.Set(i, a);
	}
	return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	exports.Set("fwdKey", Napi::Function::New(env, FwdKey));
	exports.Set("fwdVal", Napi::Function::New(env, FwdVal));
	exports.Set("procKey", Napi::Function::New(env, ProcKey));
	exports.Set("procVal", Napi::Function::New(env, ProcVal));
	exports.Set("fwdValRemoved", Napi::Function::New(env, FwdValRemoved));
	exports.Set("revKey", Napi::Function::New(env, RevKey));
	exports.Set("revVal", Napi::Function::New(env, RevVal));
	exports.Set("allocKey", Napi::Function::New(env, AllocKey));
	exports.Set("appVal", Napi::Function::New(env, AppVal));
	exports.Set("pathKey", Napi::Function::New(env, PathKey));
	exports.Set("pathVal", Napi::Function::New(env, PathVal));
	exports.Set("portId", Napi::Function::New(env, PortId));
	exports.Set("flock", Napi::Function::New(env, Flock));
	exports.Set("peerCred", Napi::Function::New(env, PeerCred));
	exports.Set("checkTables", Napi::Function::New(env, CheckTables));
	exports.Set("reserveTables", Napi::Function::New(env, ReserveTables));
	exports.Set("checkLock", Napi::Function::New(env, CheckLock));
	exports.Set("unreserveTables", Napi::Function::New(env, UnreserveTables));
	exports.Set("aidValid", Napi::Function::New(env, AidValid));
	exports.Set("recoverInflight", Napi::Function::New(env, RecoverInflight));
	exports.Set("crc32c", Napi::Function::New(env, Crc32c));
	exports.Set("shmToFd", Napi::Function::New(env, ShmToFd));
	exports.Set("fdToShm", Napi::Function::New(env, FdToShm));
	exports.Set("msgCopyAll", Napi::Function::New(env, MsgCopyAll));
	exports.Set("msgSendAll", Napi::Function::New(env, MsgSendAll));
	exports.Set("semGetAll", Napi::Function::New(env, SemGetAll));
	exports.Set("semSetAll", Napi::Function::New(env, SemSetAll));
	exports.Set("ipcStat", Napi::Function::New(env, IpcStat));
	exports.Set("ipcSetPerm", Napi::Function::New(env, IpcSetPerm));
	exports.Set("ipcRemove", Napi::Function::New(env, IpcRemove));
	exports.Set("ipcCreate", Napi::Function::New(env, IpcCreate));
	exports.Set("inflightClear", Napi::Function::New(env, InflightClear));
	exports.Set("seek", Napi::Function::New(env, Seek));
	exports.Set("portFree", Napi::Function::New(env, PortFree));
	exports.Set("shmAttachments", Napi::Function::New(env, ShmAttachments));
	return exports;
}

} // namespace

NODE_API_MODULE(appshot, Init)
