// Line-oriented JSON driver of one HushLibsignalDevice, for tests (tests/tests/libsignal_app.rs)
// and scripts: `node driver.mjs <server> <user> <password> <state-file>`.
//
// stdout, one JSON object per line:
//   {"event":"ready","user":..,"device":n,"registration_id":n}     logged in and connected
//   {"event":"queue_empty"}                                        the queue drain is over
//   {"event":"message","id":..,"from":..,"from_device":n,"content_type":..,"kind":"text"|"sent"|"other","body":..,"timestamp":n,
//    "group":..}                                                  (`group`: the group id on a group text, else null)
//   {"event":"sender_key_received","from":..,"from_device":n,"group":..,"epoch":n}   a member's sender key, processed
//   {"event":"sender_key_distributed","group":..,"epoch":n,"devices":n,"rotated":bool}  ours sent to member devices
//   {"event":"node_event","name":..,"body":{..}}                   a node event (GroupChanged, RotateSenderKey, ...), handled
//   {"event":"group_left","group":..}                              this user is no longer a member; our chain is forgotten
//   {"event":"undecryptable","id":..,"from":..,"from_device":n,"content_type":..,"error":..}
//   {"event":"keys_uploaded","counts":{..}}, {"event":"closed","code":n}, {"event":"error","error":..}
//   {"reply":n,"ok":{..}} or {"reply":n,"error":".."}             the answer to request n
// stdin, one JSON object per line (`n` is echoed in the reply):
//   {"n":1,"cmd":"send","to":"bob","text":"hi"}   -> ok {"id": message id}
//   {"n":4,"cmd":"group_send","group":"<id>","text":"hi"}   -> ok {"id": message id}
//   {"n":5,"cmd":"group_create","name":"team","members":["bob"]}  -> ok GroupInfo
//   {"n":6,"cmd":"group_add","group":"<id>","users":["carol"]}    -> ok GroupInfo
//   {"n":7,"cmd":"group_remove","group":"<id>","user":"carol"}    -> ok GroupInfo
//   {"n":2,"cmd":"reconnect"}                     closes the socket, opens a new one -> ok {}
//   {"n":3,"cmd":"quit"}                          closes and exits 0 (so does the end of stdin)
import * as readline from 'node:readline';
import { HushLibsignalDevice } from './hush-libsignal.mjs';

const [server, user, password, statePath] = process.argv.slice(2);
if (!statePath) {
  console.error('usage: node driver.mjs <server> <user> <password> <state-file>');
  process.exit(2);
}
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const dev = new HushLibsignalDevice({ server, user, password, statePath });
dev.on('message', (m) => out({ event: 'message', id: m.id, from: m.from, from_device: m.fromDevice,
  content_type: m.contentType, kind: m.kind, body: m.body, timestamp: m.timestamp, sync: m.sync, group: m.group ?? null }));
dev.on('sender-key-received', (m) => out({ event: 'sender_key_received', from: m.from, from_device: m.fromDevice,
  group: m.group, epoch: m.epoch }));
dev.on('sender-key-distributed', (m) => out({ event: 'sender_key_distributed', ...m }));
dev.on('node-event', (e) => out({ event: 'node_event', name: e.name, body: e.body }));
dev.on('group-left', (m) => out({ event: 'group_left', group: m.group }));
dev.on('undecryptable', (m) => out({ event: 'undecryptable', id: m.id, from: m.from, from_device: m.fromDevice,
  content_type: m.contentType, error: m.error }));
dev.on('queue-empty', () => out({ event: 'queue_empty' }));
dev.on('keys-uploaded', (counts) => out({ event: 'keys_uploaded', counts }));
dev.on('closed', (c) => out({ event: 'closed', code: c.code }));
dev.on('error', (e) => out({ event: 'error', error: String(e && e.message ? e.message : e) }));

async function ready() {
  const r = await dev.connect();
  out({ event: 'ready', user: r.user, device: r.device, registration_id: dev.state.registrationId });
}

try {
  await dev.login();
  await ready();
} catch (e) {
  out({ event: 'error', error: String(e && e.message ? e.message : e) });
  process.exit(1);
}

async function handle(req) {
  switch (req.cmd) {
    case 'send':
      return { id: await dev.sendText(req.to, req.text) };
    case 'group_send':
      return { id: await dev.sendGroupText(req.group, req.text) };
    case 'group_create':
      return dev.createGroup(req.name, req.members ?? []);
    case 'group_add':
      return dev.addMembers(req.group, req.users);
    case 'group_remove':
      return dev.removeMember(req.group, req.user);
    case 'reconnect':
      await dev.disconnect();
      await ready();
      return {};
    case 'quit':
      await dev.close();
      process.exit(0);
      break;
    default:
      throw new Error(`unknown cmd ${req.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    out({ event: 'error', error: `bad request line: ${e.message}` });
    return;
  }
  handle(req).then((ok) => out({ reply: req.n ?? null, ok }),
    (e) => out({ reply: req.n ?? null, error: String(e && e.message ? e.message : e) }));
});
rl.on('close', async () => {
  await dev.close();
  process.exit(0);
});
