// node demo.mjs <server> <user> <password> send <to> <text>
// node demo.mjs <server> <user> <password> listen <seconds>
//
// The device (its keys and sessions) is kept in ./<user>.hush-libsignal.json, or in the file
// named by HUSH_STATE; the tenant is `default`, or HUSH_TENANT.
import { HushLibsignalDevice } from './hush-libsignal.mjs';

const [server, user, password, cmd, ...rest] = process.argv.slice(2);
const usage = () => {
  console.error('usage: node demo.mjs <server> <user> <password> send <to> <text>\n'
    + '       node demo.mjs <server> <user> <password> listen <seconds>');
  process.exit(2);
};
if (!cmd || (cmd === 'send' && rest.length < 2) || (cmd === 'listen' && rest.length < 1)) usage();

const dev = new HushLibsignalDevice({
  server, user, password, tenant: process.env.HUSH_TENANT ?? 'default',
  statePath: process.env.HUSH_STATE ?? `${user}.hush-libsignal.json`,
});
dev.on('message', (m) => {
  if (m.kind === 'text') console.log(`${m.from}/${m.fromDevice}: ${m.body}`);
  else if (m.kind === 'sent') console.log(`(sent from device ${m.fromDevice} to ${m.to}): ${m.body}`);
  else console.log(`${m.from}/${m.fromDevice}: a message of a kind not shown (Content fields ${m.fields})`);
});
dev.on('undecryptable', (m) => console.error(`${m.from}/${m.fromDevice}: could not decrypt ${m.id}: ${m.error}`));
dev.on('keys-uploaded', (c) => console.error(`uploaded one-time keys (now ${c.ec} EC, ${c.kyber} Kyber)`));
dev.on('error', (e) => console.error(`error: ${e.message}`));

await dev.login();
await dev.connect();
if (cmd === 'send') {
  const id = await dev.sendText(rest[0], rest.slice(1).join(' '));
  console.log(`Sent ${id} to ${rest[0]}.`);
} else if (cmd === 'listen') {
  await new Promise((r) => setTimeout(r, Number(rest[0]) * 1000));
} else {
  usage();
}
await dev.close();
process.exit(0);
