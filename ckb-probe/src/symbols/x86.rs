//! Where to put a uprobe in a function on x86-64, and what it costs.
//!
//! The kernel replaces the probed instruction with `int3`. After the BPF program runs it must
//! execute the original instruction: a few kinds it emulates in the trap handler (cheap, about
//! 0.4 us here), everything else it copies to an out-of-line slot and single-steps, which takes
//! a second trap (about 14 us on this VM). See arch/x86/kernel/uprobes.c: `branch_setup_xol_ops`
//! (jmp, call, jcc, nop) and `push_setup_xol_ops` (push of a 64-bit register).
//!
//! An entry-only probe need not sit on the first instruction: [`entry_site`] walks the prologue
//! to the first emulated instruction that every call reaches exactly once, before which the
//! arguments the kernel program reads are still in place. A return probe cannot move: the
//! kernel swaps the return address at `[rsp]` when its breakpoint hits, and an entry and a
//! return probe at one offset share one breakpoint (`alloc_uprobe` finds the existing uprobe of
//! that inode and offset), so moving the entry of a probed pair would add a trap, not remove one.
//!
//! iced-x86 decodes the instructions; which decoded instructions are emulated, and what the
//! prologue instructions write, is ours to say, after the kernel's code.

use std::{collections::BTreeSet, fmt};

use iced_x86::{
    Code, Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, Mnemonic, OpKind, Register,
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

/// What the kernel that will run the probes emulates beyond the rule all supported kernels
/// follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emulation {
    /// Linux 6.16 and later also emulate the multi-byte nops of the kernel's own `x86_nops`
    /// table, byte for byte (uprobes/x86 "Add support to emulate NOP instructions", 2025).
    pub kernel_nops: bool,
}

impl Emulation {
    /// From a release string such as `6.18.44-fc`; unparsable means the oldest rule.
    pub fn of_release(release: &str) -> Emulation {
        Emulation {
            kernel_nops: crate::check::parse_release(release).is_some_and(|v| v >= (6, 16)),
        }
    }

    /// For the running kernel (the one the probes will be placed by).
    pub fn running() -> Emulation {
        Emulation::of_release(&crate::check::kernel_release())
    }
}

/// `x86_nops[len]` of a 64-bit kernel (arch/x86/include/asm/nops.h, `BYTES_NOP1..8`). Longer
/// ones carry a %cs prefix, which the uprobe decoder rejects outright.
const KERNEL_NOPS: [&[u8]; 8] = [
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/// Classifies the instruction at the start of `code` and names it as binutils' objdump does
/// (AT&T syntax; branch targets relative to the next instruction, as `.+0x10`), or in hex bytes
/// when it does not decode.
pub fn classify(code: &[u8], k: Emulation) -> (ProbeCost, String) {
    if code.is_empty() {
        return (ProbeCost::Unknown, String::new());
    }
    let insn = Decoder::new(64, code, DecoderOptions::NONE).decode();
    if insn.is_invalid() {
        return (ProbeCost::SingleStep, hex(code));
    }
    (cost_of(&insn, code, k), name(&insn))
}

fn cost_of(insn: &Instruction, bytes: &[u8], k: Emulation) -> ProbeCost {
    let own = &bytes[..insn.len().min(bytes.len())];
    if emulated(insn, bytes[0]) || (k.kernel_nops && KERNEL_NOPS.contains(&own)) {
        ProbeCost::Emulated
    } else {
        ProbeCost::SingleStep
    }
}

/// What every supported kernel emulates, as ckb-probe counts it: `push` of a 64-bit register
/// (REX.B, for %r8..%r15, being the one prefix the kernel accepts there), the one-byte `nop`,
/// and relative `jmp`, `call` and conditional jumps, each without prefixes. The kernel also
/// emulates some prefixed branches and nops, which compilers do not put in prologues: they
/// count as single-stepped here. Newer kernels' multi-byte nops: see [`Emulation`].
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

/// What an entry program reads of its function's arguments (System V x86-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Bit n: argument n (n < 6), in %rdi, %rsi, %rdx, %rcx, %r8, %r9.
    regs: u8,
    /// Any argument past the sixth, on the stack above the return address.
    stack: bool,
}

impl Needs {
    /// From a mask of argument positions (bit n = argument n).
    pub const fn args(mask: u16) -> Needs {
        Needs {
            regs: (mask & 0x3f) as u8,
            stack: mask >> 6 != 0,
        }
    }

    /// Whatever the function's program might read: all six registers and the stack.
    pub const ALL: Needs = Needs::args(u16::MAX);
}

/// Register numbers (iced's 64-bit order) of the six argument registers.
const ARG_REGS: [u8; 6] = [7, 6, 2, 1, 8, 9];
const RSP: u8 = 4;
const RBP: u8 = 5;

/// Where an entry-only probe of one function goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySite {
    /// Bytes past the function's first instruction (0: the entry itself).
    pub offset: u64,
    pub cost: ProbeCost,
    pub insn: String,
    /// How far %rsp has moved down at the site (pushes, `sub $imm,%rsp`): stack argument n is at
    /// `rsp + sp_delta + 8 * (n - 5)` there.
    pub sp_delta: u32,
    /// Why the probe stays on the first instruction (None when it moved).
    pub stays: Option<Stay>,
}

/// Why an entry-only probe stays on the function's first instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stay {
    /// Nothing to gain: the first instruction is emulated already.
    FirstEmulated,
    /// Not x86-64, or the function's bytes could not be read.
    NotDecoded,
    /// No symbol size, or a function too large to read whole: jumps back into the prologue
    /// cannot be ruled out.
    SizeUnknown,
    /// An argument register the program reads is written before any emulated instruction.
    ArgWritten {
        at: u64,
        insn: String,
        reg: &'static str,
    },
    /// %rsp moves by an amount not known statically, or the stack arguments are written.
    StackLost { at: u64, insn: String },
    /// A branch that the kernel does not emulate (indirect, `ret`) ends the straight-line code.
    Branch { at: u64, insn: String },
    /// Some jump in the function lands here: the code from here on may run more than once.
    BranchTarget { at: u64 },
    /// An instruction whose effects ckb-probe does not model.
    Unmodelled { at: u64, insn: String },
    /// The function ends (or cannot be decoded further) before any emulated instruction.
    NoneFound,
}

impl fmt::Display for Stay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stay::FirstEmulated => f.write_str("first instruction is emulated"),
            Stay::NotDecoded => f.write_str("code not decoded (not x86-64, or not readable)"),
            Stay::SizeUnknown => {
                f.write_str("function size unknown (or over 16 KiB): jumps into the prologue cannot be ruled out")
            }
            Stay::ArgWritten { at, insn, reg } => {
                write!(
                    f,
                    "+{at:#x} `{insn}` overwrites {reg}, which the program reads, before any emulated instruction"
                )
            }
            Stay::StackLost { at, insn } => write!(
                f,
                "+{at:#x} `{insn}` moves %rsp by an unknown amount or writes the stack arguments"
            ),
            Stay::Branch { at, insn } => write!(
                f,
                "+{at:#x} `{insn}` branches (not emulated) before any emulated instruction"
            ),
            Stay::BranchTarget { at } => write!(
                f,
                "+{at:#x} is a jump target, reached before any emulated instruction"
            ),
            Stay::Unmodelled { at, insn } => {
                write!(f, "+{at:#x} `{insn}`: effects not modelled by ckb-probe")
            }
            Stay::NoneFound => f.write_str("no emulated instruction in the straight-line prologue"),
        }
    }
}

/// The site of an entry-only probe on the function whose code is `code` (all of it when
/// `whole`), for a program that reads `needs`: the first instruction the kernel emulates, when
/// it is reached exactly once per call (straight-line code from the entry, no jump lands on
/// it or before it) and nothing before it overwrote what the program reads or lost track of
/// the stack arguments. Otherwise the first instruction, with the reason.
pub fn entry_site(code: &[u8], whole: bool, needs: Needs, k: Emulation) -> EntrySite {
    let (cost, insn) = classify(code, k);
    let stay = |why| EntrySite {
        offset: 0,
        cost,
        insn: insn.clone(),
        sp_delta: 0,
        stays: Some(why),
    };
    match cost {
        ProbeCost::Emulated => return stay(Stay::FirstEmulated),
        ProbeCost::Unknown => return stay(Stay::NotDecoded),
        ProbeCost::SingleStep if !whole => return stay(Stay::SizeUnknown),
        ProbeCost::SingleStep => {}
    }
    let targets = branch_targets(code);
    let mut delta: i64 = 0;
    for insn_i in Decoder::with_ip(64, code, 0, DecoderOptions::NONE) {
        let at = insn_i.ip();
        let text = || name(&insn_i);
        if at > 0 {
            if targets.contains(&at) {
                return stay(Stay::BranchTarget { at });
            }
            let own = &code[at as usize..];
            if !insn_i.is_invalid() && cost_of(&insn_i, own, k) == ProbeCost::Emulated {
                return EntrySite {
                    offset: at,
                    cost: ProbeCost::Emulated,
                    insn: text(),
                    // Never negative here: pops are modelled, and a pop of a caller's slot
                    // would be the stack arguments lost below.
                    sp_delta: u32::try_from(delta).unwrap_or(0),
                    stays: None,
                };
            }
        }
        if insn_i.is_invalid() {
            return stay(Stay::NoneFound);
        }
        if is_branch(&insn_i) {
            return stay(Stay::Branch { at, insn: text() });
        }
        let Some(e) = effects(&insn_i) else {
            return stay(Stay::Unmodelled { at, insn: text() });
        };
        if let Some(r) = ARG_REGS
            .iter()
            .enumerate()
            .find(|(n, r)| needs.regs & 1 << n != 0 && e.writes & 1 << **r != 0)
        {
            return stay(Stay::ArgWritten {
                at,
                insn: text(),
                reg: ARG_NAMES[r.0],
            });
        }
        // The return address is at [rsp + delta] before this instruction; a store at or
        // above it, or through a frame pointer above its base, reaches the caller's frame.
        let writes_args = match e.store {
            Some((base, disp)) if base == RSP => disp >= delta,
            Some((base, disp)) => base == RBP && disp >= 0,
            None => false,
        };
        match e.sp {
            Some(d) if !(needs.stack && writes_args) && delta + d >= 0 => delta += d,
            _ => return stay(Stay::StackLost { at, insn: text() }),
        }
    }
    stay(Stay::NoneFound)
}

const ARG_NAMES: [&str; 6] = ["%rdi", "%rsi", "%rdx", "%rcx", "%r8", "%r9"];

/// Offsets inside `code` that a relative jump or call of the function lands on.
fn branch_targets(code: &[u8]) -> BTreeSet<u64> {
    Decoder::with_ip(64, code, 0, DecoderOptions::NONE)
        .into_iter()
        .filter(|i| i.op0_kind() == OpKind::NearBranch64)
        .map(|i| i.near_branch_target())
        .filter(|&t| t > 0 && t < code.len() as u64)
        .collect()
}

/// Whether the instruction may leave the straight line (or never come back to it).
fn is_branch(insn: &Instruction) -> bool {
    use Mnemonic::*;
    insn.op0_kind() == OpKind::NearBranch64
        || matches!(
            insn.mnemonic(),
            Jmp | Call
                | Ret
                | Retf
                | Iretq
                | Syscall
                | Sysenter
                | Int
                | Int1
                | Int3
                | Into
                | Ud0
                | Ud1
                | Ud2
                | Hlt
                | Jmpe
        )
}

/// What one prologue instruction does to the registers and the stack.
struct Effects {
    /// Bit r: 64-bit register r (iced's order: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..)
    /// is written, whole or in part. Writes to %rsp are in `sp` instead.
    writes: u16,
    /// How far %rsp moves down (None: by an amount not known statically).
    sp: Option<i64>,
    /// A store to memory: base register and displacement.
    store: Option<(u8, i64)>,
}

/// The effects of the instructions compilers put in prologues; None for any other, which ends
/// the search (what it writes is not modelled).
fn effects(insn: &Instruction) -> Option<Effects> {
    use Mnemonic::*;
    let mut e = Effects {
        writes: 0,
        sp: Some(0),
        store: None,
    };
    let dest = |e: &mut Effects, op: u32| match insn.op_kind(op) {
        OpKind::Register => match gpr(insn.op_register(op)) {
            Some(RSP) => e.sp = None,
            Some(r) => e.writes |= 1 << r,
            None => {}
        },
        OpKind::Memory => {
            e.store = gpr(insn.memory_base())
                .map(|b| (b, insn.memory_displacement64() as i64))
                .or(Some((u8::MAX, 0)));
        }
        _ => {}
    };
    match insn.mnemonic() {
        Nop | Endbr64 | Test | Cmp | Prefetchnta | Prefetcht0 | Prefetcht1 | Prefetcht2 => {}
        Push => {
            e.sp = Some(8);
        }
        Pop => {
            dest(&mut e, 0);
            if insn.op0_kind() == OpKind::Register && gpr(insn.op0_register()) == Some(RSP) {
                e.sp = None;
            } else {
                e.sp = e.sp.map(|_| -8);
            }
        }
        Sub | Add
            if insn.op0_kind() == OpKind::Register
                && insn.op0_register() == Register::RSP
                && is_immediate(insn.op1_kind()) =>
        {
            let imm = insn.immediate(1) as i64;
            e.sp = Some(if insn.mnemonic() == Sub { imm } else { -imm });
        }
        Lea if insn.op0_register() == Register::RSP
            && insn.memory_base() == Register::RSP
            && insn.memory_index() == Register::None =>
        {
            e.sp = Some(-(insn.memory_displacement64() as i64));
        }
        Xchg | Xadd => {
            dest(&mut e, 0);
            dest(&mut e, 1);
        }
        Imul if insn.op_count() < 2 => return None,
        Mov | Movzx | Movsx | Movsxd | Lea | Xor | Sub | Add | And | Or | Adc | Sbb | Shl | Shr
        | Sar | Rol | Ror | Not | Neg | Inc | Dec | Imul | Bswap | Movaps | Movups | Movdqa
        | Movdqu | Movq | Movd | Movss | Pxor | Xorps | Vmovdqa | Vmovdqu | Vmovaps | Vmovups
        | Vpxor | Vxorps => dest(&mut e, 0),
        _ => return None,
    }
    Some(e)
}

fn is_immediate(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8 | OpKind::Immediate8to64 | OpKind::Immediate32 | OpKind::Immediate32to64
    )
}

/// The 64-bit register number of a general-purpose register of any width (%al, %ah, %ax, %eax
/// and %rax are all 0).
fn gpr(r: Register) -> Option<u8> {
    let n = r as u32;
    let block = |first: Register| n.checked_sub(first as u32).filter(|i| *i < 16);
    if let Some(i) = block(Register::RAX)
        .or_else(|| block(Register::EAX))
        .or_else(|| block(Register::AX))
    {
        return Some(i as u8);
    }
    // AL CL DL BL AH CH DH BH SPL BPL SIL DIL R8L..R15L
    let i = n.checked_sub(Register::AL as u32).filter(|i| *i < 20)?;
    Some(if i < 4 { i } else { i - 4 } as u8)
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

    /// Classified as by a kernel before 6.16.
    fn c(b: &[u8]) -> (ProbeCost, String) {
        classify(b, Emulation::default())
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

    const OLD: Emulation = Emulation { kernel_nops: false };
    const NEW: Emulation = Emulation { kernel_nops: true };
    const SUB_18: [u8; 4] = [0x48, 0x83, 0xec, 0x18];

    fn site(code: &[u8], needs: Needs) -> EntrySite {
        entry_site(code, true, needs, OLD)
    }

    #[test]
    fn kernel_nops_from_6_16() {
        assert_eq!(Emulation::of_release("6.18.44-fc-v657"), NEW);
        assert_eq!(Emulation::of_release("6.16.0"), NEW);
        assert_eq!(Emulation::of_release("6.15.9"), OLD);
        assert_eq!(Emulation::of_release("5.15.0-91-generic"), OLD);
        assert_eq!(Emulation::of_release("weird"), OLD);
        let nop5 = [0x0f, 0x1f, 0x44, 0, 0];
        assert_eq!(classify(&nop5, NEW).0, ProbeCost::Emulated);
        assert_eq!(classify(&nop5, OLD).0, ProbeCost::SingleStep);
        assert_eq!(classify(&[0x66, 0x90], NEW).0, ProbeCost::Emulated);
        // Byte for byte: another nopl form, or a %cs-prefixed long nop, is still stepped.
        assert_eq!(
            classify(&[0x0f, 0x1f, 0x04, 0x00], NEW).0,
            ProbeCost::SingleStep
        );
        let nop9 = [0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0];
        assert_eq!(classify(&nop9, NEW).0, ProbeCost::SingleStep);
    }

    #[test]
    fn moves_past_a_stack_adjustment() {
        // sub $0x18,%rsp; push %rbx; ret
        let code = [&SUB_18[..], &[0x53, 0xc3]].concat();
        let s = site(&code, Needs::ALL);
        assert_eq!(
            (s.offset, s.cost, s.sp_delta),
            (4, ProbeCost::Emulated, 0x18)
        );
        assert_eq!((s.insn.as_str(), s.stays), ("push %rbx", None));
        // endbr64; push %rbp
        let s = site(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0xc3], Needs::ALL);
        assert_eq!((s.offset, s.sp_delta, s.stays), (4, 0, None));
        // push is emulated already: nothing to move.
        let s = site(&[0x55, 0x48, 0x89, 0xe5], Needs::ALL);
        assert_eq!((s.offset, s.stays), (0, Some(Stay::FirstEmulated)));
        // sub $0x18,%rsp; mov %rsi,(%rsp); mov %rdx,0x8(%rsp); call .+0
        let code = [
            &SUB_18[..],
            &[0x48, 0x89, 0x34, 0x24, 0x48, 0x89, 0x54, 0x24, 0x08],
            &[0xe8, 0, 0, 0, 0, 0xc3],
        ]
        .concat();
        let s = site(&code, Needs::ALL);
        assert_eq!(
            (s.offset, s.insn.as_str(), s.sp_delta),
            (0xd, "call .+0x0", 0x18)
        );
    }

    #[test]
    fn kernel_nops_make_sites() {
        // sub $0x18,%rsp; nopl 0x0(%rax,%rax,1); ret
        let code = [&SUB_18[..], &[0x0f, 0x1f, 0x44, 0, 0, 0xc3]].concat();
        assert_eq!(entry_site(&code, true, Needs::ALL, NEW).offset, 4);
        let old = entry_site(&code, true, Needs::ALL, OLD);
        assert_eq!(
            (old.offset, old.stays),
            (
                0,
                Some(Stay::Branch {
                    at: 9,
                    insn: "ret".into()
                })
            )
        );
    }

    /// CKB 0.210's `rocksdb_iter_seek`: no emulated instruction before its indirect call.
    #[test]
    fn ckb_iter_seek_stays() {
        let code = [
            &SUB_18[..],
            &[
                0x48, 0x8b, 0x3f, 0x48, 0x8b, 0x07, 0x48, 0x89, 0x34, 0x24, 0x48, 0x89, 0xe6,
            ],
            &[
                0x48, 0x89, 0x54, 0x24, 0x08, 0xff, 0x50, 0x28, 0x48, 0x83, 0xc4, 0x18, 0xc3,
            ],
        ]
        .concat();
        let s = site(&code, Needs::args(0));
        assert_eq!(
            s.stays,
            Some(Stay::Branch {
                at: 0x16,
                insn: "call *0x28(%rax)".into()
            })
        );
        assert_eq!((s.offset, s.cost), (0, ProbeCost::SingleStep));
        // A program reading the iterator pointer could not move past `mov (%rdi),%rdi` anyway.
        let s = site(&code, Needs::args(1));
        assert_eq!(
            s.stays,
            Some(Stay::ArgWritten {
                at: 4,
                insn: "mov (%rdi),%rdi".into(),
                reg: "%rdi"
            })
        );
    }

    /// CKB 0.210's `rocksdb_writebatch_put_cf` moves the column family out of %rsi at once.
    #[test]
    fn ckb_writebatch_put_cf_stays() {
        let code = [
            &[0x48, 0x83, 0xec, 0x38, 0x48, 0x89, 0x14, 0x24][..],
            &[
                0x48, 0x8d, 0x44, 0x24, 0x20, 0x48, 0x8b, 0x16, 0x48, 0x89, 0xfe,
            ],
            &[0xe8, 0, 0, 0, 0, 0xc3],
        ]
        .concat();
        // (batch, cf, key, klen, val, vlen): arguments 0, 1, 3, 5.
        let s = site(&code, Needs::args(0b10_1011));
        assert_eq!(
            s.stays,
            Some(Stay::ArgWritten {
                at: 0x10,
                insn: "mov %rdi,%rsi".into(),
                reg: "%rsi"
            })
        );
        // %rdx (argument 2) is not read: its overwrite at +0xd does not stop the walk.
        assert_eq!(site(&code, Needs::args(0b1)).offset, 0x13);
    }

    #[test]
    fn stays_before_jump_targets_and_lost_stacks() {
        // sub $8,%rsp; push %rbx (a loop head: jne back to it); test %rdi,%rdi; jne -6; ret
        let code = [
            0x48, 0x83, 0xec, 0x08, 0x53, 0x48, 0x85, 0xff, 0x75, 0xfa, 0xc3,
        ];
        assert_eq!(
            site(&code, Needs::ALL).stays,
            Some(Stay::BranchTarget { at: 4 })
        );
        // and $-16,%rsp; push %rbx
        let s = site(&[0x48, 0x83, 0xe4, 0xf0, 0x53, 0xc3], Needs::args(0));
        assert!(
            matches!(s.stays, Some(Stay::StackLost { at: 0, .. })),
            "{s:?}"
        );
        // sub $8,%rsp; mov %rax,0x10(%rsp) (a stack argument's slot); push %rbx
        let code = [
            0x48, 0x83, 0xec, 0x08, 0x48, 0x89, 0x44, 0x24, 0x10, 0x53, 0xc3,
        ];
        assert!(matches!(
            site(&code, Needs::args(1 << 6)).stays,
            Some(Stay::StackLost { at: 4, .. })
        ));
        assert_eq!(site(&code, Needs::args(1)).offset, 9);
        // Size unknown: a jump back into the prologue cannot be ruled out.
        let code = [&SUB_18[..], &[0x53, 0xc3]].concat();
        let s = entry_site(&code, false, Needs::ALL, OLD);
        assert_eq!((s.offset, s.stays), (0, Some(Stay::SizeUnknown)));
        // Unmodelled: cpuid writes four registers.
        let s = site(&[0x0f, 0xa2, 0x53], Needs::args(0));
        assert!(
            matches!(s.stays, Some(Stay::Unmodelled { at: 0, .. })),
            "{s:?}"
        );
        assert_eq!(site(&[], Needs::ALL).stays, Some(Stay::NotDecoded));
    }

    #[test]
    fn registers_of_every_width() {
        assert_eq!(gpr(Register::RDI), Some(7));
        assert_eq!(gpr(Register::EDI), Some(7));
        assert_eq!(gpr(Register::DI), Some(7));
        assert_eq!(gpr(Register::DIL), Some(7));
        assert_eq!(gpr(Register::AH), Some(0));
        assert_eq!(gpr(Register::BH), Some(3));
        assert_eq!(gpr(Register::SPL), Some(RSP));
        assert_eq!(gpr(Register::R9D), Some(9));
        assert_eq!(gpr(Register::R15L), Some(15));
        assert_eq!(gpr(Register::XMM0), None);
        assert_eq!(gpr(Register::None), None);
    }

    #[test]
    fn never_panics_on_short_input() {
        for a in 0..=255u8 {
            for b in [0u8, 0x05, 0x24, 0x44, 0x84, 0xc0, 0xff] {
                let _ = c(&[a]);
                let _ = c(&[a, b]);
                let _ = c(&[0x48, a, b]);
                let _ = c(&[0x48, a]);
                let _ = entry_site(&[0x48, 0x83, 0xec, a, b, a], true, Needs::ALL, NEW);
                let _ = entry_site(&[0x48, a, b, 0x55, a, 0x41], true, Needs::ALL, NEW);
            }
        }
    }
}
