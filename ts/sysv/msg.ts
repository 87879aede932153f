import { msgCopyAll, msgSendAll } from './kernel.js';
import { type Kind, type Perm, capturedStat, createObject, failedAt, liveRows, perm, removeObject, setPerm, whyNotHeld } from './object.js';

/**
 * Message queues: a snapshot holds each queue's messages in order (one MSG
 * section per queue), left in the queue; restore makes the queue again,
 * gives it its owner, mode and byte limit first (the messages may need the
 * limit), then sends them back in order.
 */

export interface MsgRecord extends Perm {
  qbytes: number;
  messages: { type: number; data: string }[];
}

export const MSG: Kind = {
  type: 'msg',

  capture(w, rows, c) {
    for (const row of liveRows(rows, 'msg')) {
      const st = capturedStat('msg', row, c.aid);
      const messages = msgCopyAll(row.srid).map((m) => ({ type: m.type, data: m.data.toString('base64') }));
      const rec: MsgRecord = { ...perm(row, st), qbytes: st.qbytes, messages };
      w.json('msg', rec);
      c.sum.queues++;
      c.sum.messages += messages.length;
    }
  },

  recreate(r, s, c) {
    const rec = r.json<MsgRecord>(s);
    try {
      const srid = createObject(c.t, c.aid, c.identity, 'msg', rec, 0);
      setPerm('msg', srid, rec, rec.qbytes);
      msgSendAll(srid, rec.messages.map((m) => ({ type: m.type, data: Buffer.from(m.data, 'base64') })));
    } catch (err) {
      throw failedAt(`message queue ${rec.vrid}`, err);
    }
    c.sum.queues++;
    c.sum.messages += rec.messages.length;
  },

  remove: (row, listings) => removeObject('msg', row, listings),
  check: (listings, srid, key) => whyNotHeld('msg', listings, srid, key),
};
