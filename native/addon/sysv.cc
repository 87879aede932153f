// SysV IPC objects by system ID, as a snapshot reads them and a restore
// sets them again (ts/snapshot.ts, ts/restore.ts): attributes (ipcStat,
// ipcSetPerm), removal (ipcRemove), a set's semaphore values, a queue's
// messages, and which processes have a segment attached. Creation is
// inflight.cc's: the inflight record must cover it.
#include "napi_util.h"

#include <cerrno>
#include <utility>
#include <vector>

extern "C" {
#include "../core/procinfo.h"
#include "../core/snapshot.h"
}

namespace {

using addon::js_bytes;
using addon::bytes_arg;
using addon::id_arg;
using addon::int_arg;
using addon::ipc_type_arg;
using addon::libc_ops;
using addon::MAX_SAFE;
using addon::call_on;
using addon::sys_error;

struct QueueMessage {
	long type;
	std::string data;
};

// Called from C: nothing may be thrown through it.
int collect_message(void *ctx, long mtype, const void *data, size_t len)
{
	try {
		static_cast<std::vector<QueueMessage> *>(ctx)->push_back({ mtype, std::string((const char *)data, len) });
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
	std::vector<QueueMessage> msgs;
	int rc = snap_msg_copy(msqid, collect_message, &msgs, nullptr);
	if (rc) throw sys_error(env, call_on("msgCopyAll", RT_MSG, msqid), rc);
	Napi::Array out = Napi::Array::New(env, msgs.size());
	for (size_t i = 0; i < msgs.size(); i++) {
		Napi::Object m = Napi::Object::New(env);
		m.Set("type", Napi::Number::New(env, (double)msgs[i].type));
		m.Set("data", js_bytes(env, (const uint8_t *)msgs[i].data.data(), msgs[i].data.size()));
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
			throw sys_error(env, call_on("msgSendAll", RT_MSG, msqid) + ": the queue is full after " + std::to_string(i) +
						     " of " + std::to_string(msgs.size()) + " messages", rc);
		if (rc)
			throw sys_error(env, call_on("msgSendAll", RT_MSG, msqid) + " (message " + std::to_string(i) + ", " +
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
	if (sysv_ctl(&libc_ops, type, id, cmd, &ds) != 0) throw sys_error(env, call_on(call, type, id), errno);
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
	if (semctl(semid, 0, GETALL, arg) != 0) throw sys_error(env, call_on("semGetAll", RT_SEM, semid), errno);
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
		throw sys_error(env, call_on("semSetAll", RT_SEM, semid) + ": " + std::to_string(arr.Length()) + " values for " +
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
	if (semctl(semid, 0, SETALL, arg) != 0) throw sys_error(env, call_on("semSetAll", RT_SEM, semid), errno);
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
	if (sysv_rmid(&libc_ops, type, id) != 0) throw sys_error(info.Env(), call_on("ipcRemove", type, id), errno);
	return info.Env().Undefined();
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

} // namespace

namespace addon {

void RegisterSysv(Napi::Env env, Napi::Object exports)
{
	export_all(env, exports, {
		{ "ipcStat", IpcStat },
		{ "ipcSetPerm", IpcSetPerm },
		{ "ipcRemove", IpcRemove },
		{ "semGetAll", SemGetAll },
		{ "semSetAll", SemSetAll },
		{ "msgCopyAll", MsgCopyAll },
		{ "msgSendAll", MsgSendAll },
		{ "shmAttachments", ShmAttachments },
	});
}

} // namespace addon
