//! What a uprobe on a function's first instruction costs on x86-64.
//!
//! The kernel replaces the probed instruction with `int3`. After the BPF program runs it must
//! execute the original instruction: a few kinds it emulates in the trap handler (cheap, about
//! 0.4 us here), everything else it copies to an out-of-line slot and single-steps, which takes
//! a second trap (about 14 us on this VM). See arch/x86/kernel/uprobes.c: `branch_setup_xol_ops`
//! (jmp, call, jcc, nop) and `push_setup_xol_ops` (push of a 64-bit register).

use serde::Serialize;

/// How the kernel executes the probed instruction after a uprobe hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeCost {
    /// Emulated in the trap handler: one trap per hit.
    Emulated,
    /// Executed out of line with a single step: two traps per hit, much slower.
    SingleStep,
    /// The bytes could not be read or the architecture is not x86-64.
    Unknown,
}

impl ProbeCost {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbeCost::Emulated => "emulated",
            ProbeCost::SingleStep => "single-step",
            ProbeCost::Unknown => "unknown",
        }
    }
}

const REG64: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Classifies the instruction at the start of `code` and names it (AT&T syntax for the common
/// prologue instructions, hex bytes otherwise).
pub fn classify(code: &[u8]) -> (ProbeCost, String) {
    let Some(&b0) = code.first() else {
        return (ProbeCost::Unknown, String::new());
    };
    let b1 = code.get(1).copied();
    match (b0, b1) {
        (0x50..=0x57, _) => (
            ProbeCost::Emulated,
            format!("push %{}", REG64[usize::from(b0 - 0x50)]),
        ),
        (0x41, Some(b @ 0x50..=0x57)) => (
            ProbeCost::Emulated,
            format!("push %{}", REG64[usize::from(b - 0x50) + 8]),
        ),
        (0x90, _) => (ProbeCost::Emulated, "nop".into()),
        (0xe9, _) if code.len() >= 5 => (ProbeCost::Emulated, format!("jmp {}", rel(code, 1, 4))),
        (0xeb, _) if code.len() >= 2 => (ProbeCost::Emulated, format!("jmp {}", rel(code, 1, 1))),
        (0xe8, _) if code.len() >= 5 => (ProbeCost::Emulated, format!("call {}", rel(code, 1, 4))),
        (0x70..=0x7f, _) if code.len() >= 2 => (ProbeCost::Emulated, "jcc (rel8)".into()),
        (0x0f, Some(0x80..=0x8f)) if code.len() >= 6 => (ProbeCost::Emulated, "jcc (rel32)".into()),
        _ if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) => {
            (ProbeCost::SingleStep, "endbr64".into())
        }
        _ => (
            ProbeCost::SingleStep,
            decode_rex_w(code).unwrap_or_else(|| hex(code)),
        ),
    }
}

/// Relative branch displacement as `.+0x..` / `.-0x..` (relative to the next instruction).
fn rel(code: &[u8], at: usize, width: usize) -> String {
    let d: i64 = match width {
        1 => i64::from(code[at] as i8),
        _ => {
            let mut b = [0u8; 4];
            b.copy_from_slice(&code[at..at + 4]);
            i64::from(i32::from_le_bytes(b))
        }
    };
    if d < 0 {
        format!(".-{:#x}", d.unsigned_abs())
    } else {
        format!(".+{d:#x}")
    }
}

fn hex(code: &[u8]) -> String {
    let n = code.len().min(6);
    let mut s = code[..n]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if code.len() > n {
        s.push_str(" ..");
    }
    s
}

/// A memory or register operand from a ModRM byte (no SIB forms).
fn operand(code: &[u8], modrm_at: usize, rex: u8) -> Option<(String, String)> {
    let modrm = *code.get(modrm_at)?;
    let md = modrm >> 6;
    let reg = REG64[usize::from(((rex >> 2) & 1) << 3 | ((modrm >> 3) & 7))];
    let rm_low = modrm & 7;
    let rm = REG64[usize::from((rex & 1) << 3 | rm_low)];
    let mem = match md {
        0b11 => format!("%{rm}"),
        // SIB addressing: not worth decoding for a label.
        _ if rm_low == 4 => return None,
        0b00 if rm_low == 5 => {
            let d = code.get(modrm_at + 1..modrm_at + 5)?;
            let d = i32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            format!("{}(%rip)", signed_hex(i64::from(d)))
        }
        0b00 => format!("(%{rm})"),
        0b01 => {
            let d = *code.get(modrm_at + 1)? as i8;
            format!("{}(%{rm})", signed_hex(i64::from(d)))
        }
        _ => {
            let d = code.get(modrm_at + 1..modrm_at + 5)?;
            let d = i32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            format!("{}(%{rm})", signed_hex(i64::from(d)))
        }
    };
    Some((reg.to_string(), mem))
}

fn signed_hex(d: i64) -> String {
    if d < 0 {
        format!("-{:#x}", d.unsigned_abs())
    } else {
        format!("{d:#x}")
    }
}

/// Names the REX.W prologue instructions compilers emit most: `sub/add/cmp $imm,%reg`,
/// `mov`, `lea`, `test`.
fn decode_rex_w(code: &[u8]) -> Option<String> {
    let rex = *code.first()?;
    if rex & 0xf8 != 0x48 {
        return None;
    }
    let op = *code.get(1)?;
    match op {
        0x83 | 0x81 => {
            let modrm = *code.get(2)?;
            if modrm >> 6 != 0b11 {
                return None;
            }
            let name = match (modrm >> 3) & 7 {
                0 => "add",
                5 => "sub",
                7 => "cmp",
                _ => return None,
            };
            let imm = if op == 0x83 {
                i64::from(*code.get(3)? as i8)
            } else {
                let d = code.get(3..7)?;
                i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]]))
            };
            let reg = REG64[usize::from((rex & 1) << 3 | (modrm & 7))];
            Some(format!("{name} ${},%{reg}", signed_hex(imm)))
        }
        0x8b => {
            let (reg, mem) = operand(code, 2, rex)?;
            Some(format!("mov {mem},%{reg}"))
        }
        0x89 => {
            let (reg, mem) = operand(code, 2, rex)?;
            Some(format!("mov %{reg},{mem}"))
        }
        // `test %reg,%reg`: the null check many C API wrappers open with.
        0x85 => {
            let (reg, rm) = operand(code, 2, rex)?;
            Some(format!("test %{reg},{rm}"))
        }
        0x8d => {
            let (reg, mem) = operand(code, 2, rex)?;
            // lea with a register source does not exist.
            if !mem.contains('(') {
                return None;
            }
            Some(format!("lea {mem},%{reg}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(b: &[u8]) -> (ProbeCost, String) {
        classify(b)
    }

    #[test]
    fn pushes_are_emulated() {
        assert_eq!(
            c(&[0x41, 0x57, 0x41, 0x56]),
            (ProbeCost::Emulated, "push %r15".into())
        );
        assert_eq!(
            c(&[0x55, 0x48, 0x89]),
            (ProbeCost::Emulated, "push %rbp".into())
        );
        assert_eq!(c(&[0x53]), (ProbeCost::Emulated, "push %rbx".into()));
        assert_eq!(c(&[0x41, 0x54]), (ProbeCost::Emulated, "push %r12".into()));
    }

    #[test]
    fn branches_and_nop_are_emulated() {
        assert_eq!(
            c(&[0xe9, 0x10, 0, 0, 0]),
            (ProbeCost::Emulated, "jmp .+0x10".into())
        );
        assert_eq!(c(&[0xeb, 0xfe]), (ProbeCost::Emulated, "jmp .-0x2".into()));
        assert_eq!(c(&[0xe8, 0, 0, 0, 0]).0, ProbeCost::Emulated);
        assert_eq!(c(&[0x90]).0, ProbeCost::Emulated);
        // Truncated branch: not an instruction we can name.
        assert_eq!(c(&[0xe9, 0x10]).0, ProbeCost::SingleStep);
    }

    #[test]
    fn prologues_that_single_step() {
        assert_eq!(
            c(&[0x48, 0x83, 0xec, 0x18]),
            (ProbeCost::SingleStep, "sub $0x18,%rsp".into())
        );
        assert_eq!(
            c(&[0x48, 0x81, 0xec, 0x00, 0x01, 0, 0]),
            (ProbeCost::SingleStep, "sub $0x100,%rsp".into())
        );
        assert_eq!(
            c(&[0x48, 0x8b, 0x3f]),
            (ProbeCost::SingleStep, "mov (%rdi),%rdi".into())
        );
        assert_eq!(
            c(&[0x48, 0x8b, 0x7f, 0x08]),
            (ProbeCost::SingleStep, "mov 0x8(%rdi),%rdi".into())
        );
        assert_eq!(
            c(&[0x48, 0x8d, 0x05, 0x10, 0, 0, 0]),
            (ProbeCost::SingleStep, "lea 0x10(%rip),%rax".into())
        );
        assert_eq!(
            c(&[0x4c, 0x89, 0xc0]),
            (ProbeCost::SingleStep, "mov %r8,%rax".into())
        );
        assert_eq!(
            c(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55]),
            (ProbeCost::SingleStep, "endbr64".into())
        );
        assert_eq!(
            c(&[0x48, 0x85, 0xff, 0x74, 0x2b]),
            (ProbeCost::SingleStep, "test %rdi,%rdi".into())
        );
        assert_eq!(
            c(&[0x0f, 0x1f, 0x44, 0, 0, 0, 0, 0]),
            (ProbeCost::SingleStep, "0f 1f 44 00 00 00 ..".into())
        );
        assert_eq!(
            c(&[0x0f, 0x1f, 0x44, 0, 0]),
            (ProbeCost::SingleStep, "0f 1f 44 00 00".into())
        );
        assert_eq!(c(&[]), (ProbeCost::Unknown, String::new()));
    }

    #[test]
    fn never_panics_on_short_input() {
        for a in 0..=255u8 {
            for b in [0u8, 0x05, 0x24, 0x44, 0x84, 0xc0, 0xff] {
                let _ = classify(&[a]);
                let _ = classify(&[a, b]);
                let _ = classify(&[0x48, a, b]);
                let _ = classify(&[0x48, a]);
            }
        }
    }
}
