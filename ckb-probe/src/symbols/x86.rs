//! What a uprobe on a function's first instruction costs on x86-64.
//!
//! The kernel replaces the probed instruction with `int3`. After the BPF program runs it must
//! execute the original instruction: a few kinds it emulates in the trap handler (cheap, about
//! 0.4 us here), everything else it copies to an out-of-line slot and single-steps, which takes
//! a second trap (about 14 us on this VM). See arch/x86/kernel/uprobes.c: `branch_setup_xol_ops`
//! (jmp, call, jcc, nop) and `push_setup_xol_ops` (push of a 64-bit register).
//!
//! iced-x86 decodes the instruction; which decoded instructions are emulated is ours to say,
//! after the kernel's code.

use iced_x86::{
    Code, Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, Mnemonic, OpKind,
};
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

/// Classifies the instruction at the start of `code` and names it as binutils' objdump does
/// (AT&T syntax; branch targets relative to the next instruction, as `.+0x10`), or in hex bytes
/// when it does not decode.
pub fn classify(code: &[u8]) -> (ProbeCost, String) {
    if code.is_empty() {
        return (ProbeCost::Unknown, String::new());
    }
    let insn = Decoder::new(64, code, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return (ProbeCost::SingleStep, hex(code));
    }
    let cost = if emulated(&insn, code[0]) {
        ProbeCost::Emulated
    } else {
        ProbeCost::SingleStep
    };
    (cost, name(&insn))
}

/// What the kernel emulates, as ckb-probe counts it: `push` of a 64-bit register (REX.B, for
/// %r8..%r15, being the one prefix the kernel accepts there), the one-byte `nop`, and relative
/// `jmp`, `call` and conditional jumps, each without prefixes. The kernel also emulates some
/// prefixed branches and nops, which compilers do not put at function entries, and, from 2025
/// on, multi-byte nops, which depends on the kernel ckb-probe will meet: both count as
/// single-stepped here.
fn emulated(insn: &Instruction, first: u8) -> bool {
    let unprefixed = !is_prefix(first);
    match insn.code() {
        Code::Push_r64 => unprefixed || (first == 0x41 && insn.len() == 2),
        Code::Nopd => insn.len() == 1,
        Code::Jmp_rel8_64 | Code::Jmp_rel32_64 | Code::Call_rel32_64 => unprefixed,
        _ => unprefixed && insn.op0_kind() == OpKind::NearBranch64 && is_jcc(insn.mnemonic()),
    }
}

/// A legacy prefix or a REX byte (64-bit mode).
fn is_prefix(b: u8) -> bool {
    matches!(
        b,
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x40..=0x4f
    )
}

fn is_jcc(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Jo | Jno | Jb | Jae | Je | Jne | Jbe | Ja | Js | Jns | Jp | Jnp | Jl | Jge | Jle | Jg
    )
}

fn name(insn: &Instruction) -> String {
    let mut f = GasFormatter::new();
    let o = f.options_mut();
    o.set_uppercase_hex(false);
    o.set_small_hex_numbers_in_decimal(false);
    o.set_rip_relative_addresses(true);
    o.set_show_zero_displacements(true);
    let mut s = String::new();
    if insn.op0_kind() == OpKind::NearBranch64 {
        // The absolute target would depend on where the bytes were decoded.
        f.format_mnemonic(insn, &mut s);
        let d = insn.near_branch_target().wrapping_sub(insn.next_ip()) as i64;
        if d < 0 {
            s.push_str(&format!(" .-{:#x}", d.unsigned_abs()));
        } else {
            s.push_str(&format!(" .+{d:#x}"));
        }
        s
    } else {
        f.format(insn, &mut s);
        // objdump gives no size suffix to what is 64-bit by default (`call *0x10(%rip)`,
        // `push 0x8(%rsp)`); iced does when the operand is in memory.
        if matches!(
            insn.mnemonic(),
            Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Push | Mnemonic::Pop
        ) && let Some(i) = s.find("q ")
            && !s[..i].contains(' ')
        {
            s.remove(i);
        }
        with_scale(&s)
    }
}

/// objdump writes the scale of every index register (`(%r12,%r13,1)`); iced leaves a scale of
/// 1 out, and its `always_show_scale` option also marks operands without an index (`(%rdi,)`).
fn with_scale(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut commas = None;
    for c in s.chars() {
        match c {
            '(' => commas = Some(0),
            ',' => commas = commas.map(|n| n + 1),
            // `(base,index)`: no scale yet; `%st(1)` and `(base)` have no comma.
            ')' if commas == Some(1) => out.push_str(",1"),
            _ => {}
        }
        if c == ')' {
            commas = None;
        }
        out.push(c);
    }
    out
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
            (ProbeCost::SingleStep, "nopl 0x0(%rax,%rax,1)".into())
        );
        // Cut short: not an instruction.
        assert_eq!(
            c(&[0x0f, 0x1f, 0x44, 0]),
            (ProbeCost::SingleStep, "0f 1f 44 00".into())
        );
        assert_eq!(
            c(&[0x0f, 0x0b, 0, 0, 0, 0, 0, 0]),
            (ProbeCost::SingleStep, "ud2".into())
        );
        // `push %es`, invalid in 64-bit mode.
        assert_eq!(
            c(&[0x06, 0, 0, 0, 0, 0, 0]),
            (ProbeCost::SingleStep, "06 00 00 00 00 00 ..".into())
        );
        assert_eq!(c(&[]), (ProbeCost::Unknown, String::new()));
    }

    /// Names as binutils 2.40's `objdump -d` prints them (AT&T, spaces collapsed), for the
    /// forms iced and objdump write differently unless told: scale 1, encoded zero
    /// displacements, segment overrides, size suffixes, sign-extended immediates, prefixes.
    #[test]
    fn names_match_objdump() {
        for (bytes, objdump) in [
            (
                &[0x4e, 0x8d, 0x3c, 0xe5, 0, 0, 0, 0][..],
                "lea 0x0(,%r12,8),%r15",
            ),
            (&[0x4b, 0x8d, 0x04, 0x2c], "lea (%r12,%r13,1),%rax"),
            (&[0x49, 0x8b, 0x55, 0x00], "mov 0x0(%r13),%rdx"),
            (
                &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0],
                "mov %fs:0x28,%rax",
            ),
            (&[0x48, 0x83, 0xc4, 0x80], "add $0xffffffffffffff80,%rsp"),
            (&[0x48, 0x8b, 0x44, 0x24, 0xf8], "mov -0x8(%rsp),%rax"),
            (&[0x66, 0x0f, 0x1f, 0x44, 0, 0], "nopw 0x0(%rax,%rax,1)"),
            (&[0x48, 0x89, 0xe5], "mov %rsp,%rbp"),
            (&[0x31, 0xc0], "xor %eax,%eax"),
            (&[0x48, 0xc7, 0x07, 0, 0, 0, 0], "movq $0x0,(%rdi)"),
            (&[0xc7, 0x07, 1, 0, 0, 0], "movl $0x1,(%rdi)"),
            (&[0x48, 0x63, 0xc7], "movslq %edi,%rax"),
            (&[0x0f, 0xb6, 0x07], "movzbl (%rdi),%eax"),
            (&[0xc5, 0xf9, 0x6f, 0x07], "vmovdqa (%rdi),%xmm0"),
            (&[0xc3], "ret"),
            (&[0xff, 0x25, 0x10, 0, 0, 0], "jmp *0x10(%rip)"),
            (&[0xff, 0x15, 0x10, 0, 0, 0], "call *0x10(%rip)"),
            (&[0xff, 0x74, 0x24, 0x78], "push 0x78(%rsp)"),
            (&[0x8f, 0x07], "pop (%rdi)"),
            (&[0xff, 0xe0], "jmp *%rax"),
        ] {
            assert_eq!(c(bytes).1, objdump, "{bytes:02x?}");
        }
    }

    #[test]
    fn emulation_follows_the_kernel() {
        // Conditional jumps, named by their condition.
        assert_eq!(c(&[0x74, 0x2b]), (ProbeCost::Emulated, "je .+0x2b".into()));
        assert_eq!(
            c(&[0x0f, 0x85, 0xf0, 0xff, 0xff, 0xff]),
            (ProbeCost::Emulated, "jne .-0x10".into())
        );
        assert_eq!(
            c(&[0xe8, 0, 0, 0, 0]),
            (ProbeCost::Emulated, "call .+0x0".into())
        );
        // A push with any prefix but REX.B, or of a 16-bit register, is single-stepped.
        assert_eq!(c(&[0x48, 0x50]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0x66, 0x50]), (ProbeCost::SingleStep, "push %ax".into()));
        assert_eq!(c(&[0x41, 0x41, 0x50]).0, ProbeCost::SingleStep);
        // Only the one-byte nop; `41 90` is an exchange with %r8d, `f3 90` a pause.
        assert_eq!(c(&[0x66, 0x90]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0x41, 0x90]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xf3, 0x90]).0, ProbeCost::SingleStep);
        // Branches with a prefix; indirect, loop and jrcxz branches.
        assert_eq!(c(&[0x66, 0xe9, 0, 0]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xf2, 0xe9, 0, 0, 0, 0]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0x2e, 0x74, 0x2b]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xff, 0x25, 0x10, 0, 0, 0]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xe2, 0xfe]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xe3, 0xfe]).0, ProbeCost::SingleStep);
        assert_eq!(c(&[0xc3]).0, ProbeCost::SingleStep);
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
