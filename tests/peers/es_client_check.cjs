// Reads bulk bodies (a JSON array of strings on stdin) and re-encodes each with the official
// @elastic/elasticsearch client's serializer (the one its bulk helper and client.bulk() use:
// every action and document JSON.stringify'd, one per line, each line ended by "\n"). Prints a
// JSON report {bodies, lines, same, first_difference}: the bodies Sluice sent are what the real
// client would send when same == bodies. Needs SLUICE_NODE_DIR/node_modules on NODE_PATH.
'use strict';
const {Serializer} = require('@elastic/transport');
require('@elastic/elasticsearch'); // the client itself must load: this is its transport's serializer
const s = new Serializer();
let input = '';
process.stdin.on('data', c => (input += c));
process.stdin.on('end', () => {
    const bodies = JSON.parse(input);
    let same = 0, lines = 0, diff = null;
    for (const b of bodies) {
        const parts = b.slice(0, -1).split('\n');
        lines += parts.length;
        const again = s.ndserialize(parts.map(l => JSON.parse(l)));
        if (again === b) same++;
        else if (!diff) {
            let i = 0;
            while (i < b.length && b[i] === again[i]) i++;
            diff = {at: i, ours: b.slice(Math.max(0, i - 40), i + 40), client: again.slice(Math.max(0, i - 40), i + 40)};
        }
    }
    console.log(JSON.stringify({bodies: bodies.length, lines, same, first_difference: diff}));
});
