// The official RavenDB Node.js client (npm `ravendb`, pinned in package.json) against a live, secured Roost, the way
// an application uses it. Run by tests/test_ravendb_node.py:
//   node roost_client.mjs <url> <admin .pfx> <ca.crt> <database>
// Each step prints one JSON line {"step": ..., ...}; any failure exits non-zero with the error.
import fs from "node:fs";
import zlib from "node:zlib";
import {
    DocumentStore, CreateDatabaseOperation, CreateClientCertificateOperation, GetCertificatesOperation,
    DeleteCertificateOperation, GetStatisticsOperation, PutAttachmentOperation, GetAttachmentOperation,
} from "ravendb";

const [url, adminPfx, caPath, database] = process.argv.slice(2);
const ca = fs.readFileSync(caPath);

function report(step, values = {}) {
    console.log(JSON.stringify({ step, ...values }));
}

function storeWith(pfx, db) {
    const store = new DocumentStore(url, db, { certificate: pfx, type: "pfx", ca });
    store.initialize();
    return store;
}

// The package is a zip (RavenDB's: one .pfx, one .crt, one .key): read its .pfx without a zip library.
function pfxFromZip(zip) {
    for (let at = 0; at + 30 <= zip.length && zip.readUInt32LE(at) === 0x04034b50;) {
        const method = zip.readUInt16LE(at + 8);
        const size = zip.readUInt32LE(at + 18);
        const nameLength = zip.readUInt16LE(at + 26);
        const extraLength = zip.readUInt16LE(at + 28);
        const name = zip.subarray(at + 30, at + 30 + nameLength).toString("utf8");
        const start = at + 30 + nameLength + extraLength;
        const data = zip.subarray(start, start + size);
        if (name.endsWith(".pfx")) {
            return method === 8 ? zlib.inflateRawSync(data) : Buffer.from(data);
        }
        at = start + size;
    }
    throw new Error("the certificate package holds no .pfx");
}

class User {
    constructor(name, age) {
        this.name = name;
        this.age = age;
    }
}

const admin = storeWith(fs.readFileSync(adminPfx), database);
admin.conventions.registerEntityType?.(User);
try {
    await admin.maintenance.server.send(new CreateDatabaseOperation({ databaseName: database }));
    report("database", { name: database });

    // Changes first: the stream must be open before the writes it reports.
    const changes = admin.changes();
    await changes.ensureConnectedNow();
    const seen = [];
    const all = changes.forAllDocuments();
    all.on("data", change => seen.push({ type: change.type, id: change.id, collection: change.collectionName }));
    await all.ensureSubscribedNow();

    // Session: HiLo ids, store, load, query, delete.
    const session = admin.openSession();
    const alice = new User("Alice", 30);
    const bob = new User("Bob", 40);
    await session.store(alice);
    await session.store(bob);
    await session.saveChanges();
    report("stored", { ids: [alice.id, bob.id] });
    const loaded = await admin.openSession().load(alice.id, User);
    report("loaded", { id: alice.id, name: loaded.name, age: loaded.age });
    const found = await admin.openSession().query({ collection: "Users" }).whereEquals("name", "Bob").all();
    report("query", { names: found.map(u => u.name) });
    const deleting = admin.openSession();
    await deleting.delete(bob.id);
    await deleting.saveChanges();
    report("deleted", { id: bob.id, after: await admin.openSession().load(bob.id) });

    // Attachments through the operations, and through the session (multipart bulk_docs).
    await admin.operations.send(new PutAttachmentOperation(alice.id, "note.txt", Buffer.from("hello roost"),
        "text/plain"));
    const attachment = await admin.operations.send(new GetAttachmentOperation(alice.id, "note.txt", "Document",
        null));
    const chunks = [];
    for await (const chunk of attachment.data) {
        chunks.push(chunk);
    }
    attachment.dispose();
    report("attachment", { text: Buffer.concat(chunks).toString("utf8"), size: attachment.details.size,
        contentType: attachment.details.contentType });
    const withPhoto = admin.openSession();
    const carol = new User("Carol", 50);
    await withPhoto.store(carol);
    withPhoto.advanced.attachments.store(carol, "photo.png", Buffer.from([0x89, 0x50, 0x4e, 0x47]), "image/png");
    await withPhoto.saveChanges();
    const carolAgain = admin.openSession();
    const carolLoaded = await carolAgain.load(carol.id);
    report("session attachment", { names: carolAgain.advanced.attachments.getNames(carolLoaded).map(a => a.name) });
    const stats = await admin.maintenance.send(new GetStatisticsOperation());
    report("stats", { documents: stats.countOfDocuments, attachments: stats.countOfAttachments });

    // Wait for the changes of the writes above (Put alice, Put bob, Delete bob at least).
    for (let i = 0; i < 200 && !seen.some(c => c.type === "Delete"); i++) {
        await new Promise(resolve => setTimeout(resolve, 50));
    }
    changes.dispose();
    report("changes", { seen });

    // Certificates through the operations.
    const created = await admin.maintenance.server.send(new CreateClientCertificateOperation(
        "node-reader", { [database]: "Read" }, "ValidUser"));
    const listed = await admin.maintenance.server.send(new GetCertificatesOperation(0, 100));
    const reader = listed.find(c => c.name === "node-reader");
    report("certificate created", { listed: Boolean(reader), permissions: reader && reader.permissions });

    // The refusal: a User certificate with Read loads, but cannot write.
    const readerStore = storeWith(pfxFromZip(Buffer.from(created.rawData)), database);
    try {
        const readerLoaded = await readerStore.openSession().load(alice.id);
        const writing = readerStore.openSession();
        await writing.store(new User("Mallory", 1), "users/mallory");
        let refusal = null;
        try {
            await writing.saveChanges();
        } catch (error) {
            refusal = error.name;
        }
        report("reader", { loaded: readerLoaded && readerLoaded.name, refusal });
    } finally {
        readerStore.dispose();
    }

    await admin.maintenance.server.send(new DeleteCertificateOperation(reader.thumbprint));
    const after = await admin.maintenance.server.send(new GetCertificatesOperation(0, 100));
    report("certificate deleted", { listed: after.some(c => c.name === "node-reader") });
} finally {
    admin.dispose();
}
