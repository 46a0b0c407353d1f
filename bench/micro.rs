//! Micro-benchmarks of the hot pure functions (criterion): command parsing, the DATA
//! decoder, and the shipped default policy deciding over a typical message's facts.
//!
//!   cargo bench --locked --ignore-rust-version --bench micro
//!
//! The figures are for people comparing two builds on one machine (criterion keeps the last
//! run under target/criterion and reports the change); no test asserts on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::config::Config;
use portcullis::pipeline::Stage;
use portcullis::pipeline::facts;
use portcullis::pipeline::outcome::Fact;
use portcullis::policy::Policy;
use portcullis::smtp::codec::BodyDecoder;
use portcullis::smtp::command::Command;

fn commands(c: &mut Criterion) {
    let lines: [&[u8]; 5] = [
        b"EHLO mail.example.org\r\n",
        b"MAIL FROM:<alice@example.org> SIZE=4096 BODY=8BITMIME\r\n",
        b"RCPT TO:<bob@example.com>\r\n",
        b"DATA\r\n",
        b"QUIT\r\n",
    ];
    c.bench_function("command/parse a transaction's five lines", |b| {
        b.iter(|| {
            for line in lines {
                black_box(Command::parse(black_box(line)).is_ok());
            }
        })
    });
}

/// About `size` bytes of message in lines of 76 letters, some starting with a dot.
fn content(size: usize) -> Vec<u8> {
    let mut m =
        b"From: <alice@example.org>\r\nTo: <bob@example.com>\r\nSubject: s\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < size {
        if i % 20 == 0 {
            m.push(b'.');
        }
        m.extend_from_slice(&[b'a' + (i % 26) as u8; 76]);
        m.extend_from_slice(b"\r\n");
        i += 1;
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn data_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("data decoder");
    for size in [4096, 65536] {
        let input = content(size);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("{size} bytes in 16 KiB reads"), |b| {
            let mut out = Vec::with_capacity(input.len());
            b.iter(|| {
                out.clear();
                let mut decoder = BodyDecoder::data();
                for chunk in input.chunks(16 * 1024) {
                    let (_, done) = decoder.decode(black_box(chunk), &mut out);
                    if done {
                        break;
                    }
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// The facts of a typical authenticated message at the end of DATA.
fn typical_facts() -> Vec<Fact> {
    vec![
        Fact::text(&facts::CLIENT_IP, "192.0.2.10"),
        Fact::flag(&facts::RDNS_PTR, true),
        Fact::text(&facts::RDNS_NAME, "mail.example.org"),
        Fact::flag(&facts::RDNS_FCRDNS, true),
        Fact::count(&facts::DNSBL_SCORE, 0),
        Fact::text(&facts::HELO, "mail.example.org"),
        Fact::flag(&facts::HELO_VALID, true),
        Fact::flag(&facts::HELO_LITERAL, false),
        Fact::flag(&facts::HELO_LITERAL_MISMATCH, false),
        Fact::flag(&facts::HELO_OURS, false),
        Fact::flag(&facts::HELO_RESOLVES, true),
        Fact::text(&facts::MAIL_FROM, "alice@example.org"),
        Fact::text(&facts::MAIL_FROM_DOMAIN, "example.org"),
        Fact::text(&facts::SPF_MAILFROM, "pass"),
        Fact::text(&facts::SPF_HELO, "pass"),
        Fact::text(&facts::SPF_DOMAIN, "example.org"),
        Fact::text(&facts::RCPT, "bob@example.com"),
        Fact::text(&facts::RCPT_DOMAIN, "example.com"),
        Fact::count(&facts::RECIPIENTS_COUNT, 1),
        Fact::count(&facts::SIZE_ACTUAL, 4096),
        Fact::text(&facts::HEADER, "from: Alice <alice@example.org>"),
        Fact::text(&facts::HEADER, "to: Bob <bob@example.com>"),
        Fact::text(&facts::HEADER, "subject: the figures"),
        Fact::text(&facts::DKIM, "pass"),
        Fact::text(&facts::DKIM_DOMAIN, "example.org"),
        Fact::text(&facts::ARC, "none"),
        Fact::text(&facts::DMARC, "pass"),
        Fact::text(&facts::DMARC_POLICY, "reject"),
        Fact::text(&facts::DMARC_DOMAIN, "example.org"),
        Fact::count(&facts::DMARC_AUTHOR_DOMAINS, 1),
        Fact::text(&facts::AUTH_DOMAIN, "example.org"),
    ]
}

fn policy(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config {
        policy: Some(root.join("policies/default.yaml")),
        ..Config::default()
    };
    let policy = Policy::load(&config).expect("the shipped default policy compiles");
    let facts = typical_facts();
    c.bench_function("policy/default.yaml decides at DATA", |b| {
        b.iter(|| black_box(policy.decide(Stage::Data, black_box(&facts))))
    });
}

criterion_group!(hot, commands, data_decoder, policy);
criterion_main!(hot);
