// A small SMSC written with the npm `smpp` package: an SMPP peer smsmesh did not write,
// for the connector's interop test.
//
//   node smsc.js [system_id] [password]
//
// Listens on 127.0.0.1 on a free port and prints {"port": N} as its first stdout line.
// Checks the bind's credentials, answers every submit_sm with a hex message id and,
// when a receipt was asked for, sends a deliver_sm receipt: esm_class 0x04, the
// receipted_message_id and message_state TLVs, and the usual "id:... stat:DELIVRD" text.
// Prints one JSON line per submit_sm ({"submit": dest, "id": ..., "udh": bool}) so the
// test can compare what it saw. Exits on SIGTERM.
'use strict';

const smpp = require('smpp');

const systemId = process.argv[2] || 'smsmesh';
const password = process.argv[3] || 'secret1';
let nextId = 0x5a000000;

function smppDate(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return (
    pad(date.getUTCFullYear() % 100) + pad(date.getUTCMonth() + 1) + pad(date.getUTCDate()) +
    pad(date.getUTCHours()) + pad(date.getUTCMinutes())
  );
}

function authorize(session, pdu) {
  if (pdu.system_id !== systemId || pdu.password !== password) {
    session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
    session.close();
    return;
  }
  session.send(pdu.response({ system_id: 'node-smsc' }));
}

const server = smpp.createServer((session) => {
  session.on('error', () => session.destroy());
  for (const bind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(bind, (pdu) => authorize(session, pdu));
  }
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const id = (nextId++).toString(16);
    session.send(pdu.response({ message_id: id }));
    const udh = Boolean(pdu.short_message && pdu.short_message.udh);
    process.stdout.write(JSON.stringify({ submit: pdu.destination_addr, id, udh }) + '\n');
    if ((pdu.registered_delivery & 0x01) === 0) {
      return;
    }
    const now = smppDate(new Date());
    const text =
      `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`;
    setTimeout(() => {
      session.deliver_sm({
        source_addr: pdu.destination_addr,
        destination_addr: pdu.source_addr,
        esm_class: 0x04,
        data_coding: 0x01,
        short_message: Buffer.from(text, 'ascii'),
        receipted_message_id: id,
        message_state: 2, // DELIVERED
      });
    }, 5);
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

process.on('SIGTERM', () => {
  for (const session of server.sessions.slice()) {
    session.destroy();
  }
  server.close(() => process.exit(0));
});
