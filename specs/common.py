"""KVM functions the modelled versions share, and the map from events to KVM's entry points.

Everything here is the same in every version under verification (v5.12 .. v6.6); a version
module overrides what its tree does differently and cites the commit.  Comments name the
kernel function each method mirrors (arch/x86/kvm/).
"""

from __future__ import annotations

from formal.errors import NotModeled
from formal.model import arch, roles
from formal.model import events as ev
from formal.model.bits import (
    CR0_CD,
    CR0_EM,
    CR0_ET,
    CR0_NW,
    CR0_PE,
    CR0_PG,
    CR0_TS,
    CR3_PCID_MASK,
    CR4_GUEST_OWNED_EPT,
    CR4_PAE,
    CR4_PCIDE,
    EFER_LMA,
)
from formal.model.kvm import ROOT_CURRENT, ROOT_PREVIOUS, ROOTS_ALL, Mechanism
from formal.model.roles import RoleFacts
from formal.model.state import KVM_MMU_NUM_PREV_ROOTS, Mmu, Nested, Req, Root, Vcpu
from formal.model.values import ite, neg, truth


class Common(Mechanism):
    """The shared part of every policy."""

    role_facts = RoleFacts(shadow_root_forces_nx=False)
    # The request of a nested VMX transition without VPID for L2: set by each version
    # (specs/v5_12.py, specs/v5_17.py).
    vmx_transition_request: Req

    # -- roles (mmu.c kvm_init_mmu and its helpers) --

    def calc_cpu_role(self, v: Vcpu) -> int:
        r = v.regs
        return roles.calc_cpu_role(r.cr0, r.cr4, r.efer, v.smm, v.guest_mode)

    def calc_root_role(self, v: Vcpu) -> int:
        """The root role kvm_init_mmu gives the active MMU for the current registers."""
        if v.mmu_is_guest:
            return roles.nested_tdp_root_role(v.smm)
        return self.kvm_mmu_calc_root_page_role(v)

    def kvm_mmu_calc_root_page_role(self, v: Vcpu) -> int:
        """mmu.c (v5.12 .. v5.17) kvm_mmu_calc_root_page_role: the TDP root role when
        tdp_enabled, else the shadow root role, for the current registers -- whichever MMU is
        active.  kvm_init_mmu gives root_mmu this role."""
        if self.tdp_enabled:
            return roles.tdp_root_role(v.smm, v.guest_mode, self.role_facts)
        return roles.shadow_root_role(self.calc_cpu_role(v), self.role_facts)

    def kvm_init_mmu(self, v: Vcpu) -> None:
        """mmu.c kvm_init_mmu: nested mmu (walk_mmu == nested_mmu), TDP mmu, or soft mmu."""
        if v.mmu_is_guest:
            # init_kvm_nested_mmu: only the walker's role; guest_mmu is L1's EPT/NPT shadow.
            v.nested_cpu_role = self.calc_cpu_role(v)
            v.guest_mmu.cpu_role = v.guest_mmu.root_role = roles.nested_tdp_root_role(v.smm)
            return
        mmu = v.root_mmu
        mmu.cpu_role = self.calc_cpu_role(v)
        mmu.root_role = self.calc_root_role(v)

    def get_guest_pgd(self, v: Vcpu) -> int:
        """mmu->get_guest_pgd: kvm_read_cr3 for root_mmu, EPTP/nCR3 for the guest_mmu."""
        return v.nested_pgd if v.mmu_is_guest else v.regs.cr3

    def kvm_get_pcid(self, v: Vcpu, cr3: int) -> int:
        """x86.h kvm_get_pcid: CR3[11:0] with CR4.PCIDE, else 0."""
        return ite(v.regs.cr4 & CR4_PCIDE, cr3 & CR3_PCID_MASK, 0)

    def kvm_get_active_pcid(self, v: Vcpu) -> int:
        return self.kvm_get_pcid(v, v.regs.cr3)

    @staticmethod
    def is_pae_paging(v: Vcpu) -> bool:
        """x86.h is_pae_paging: CR0.PG && CR4.PAE && !EFER.LMA."""
        r = v.regs
        return r.cr0 & CR0_PG != 0 and r.cr4 & CR4_PAE != 0 and r.efer & EFER_LMA == 0

    # -- roots (mmu.c) --

    @staticmethod
    def is_root_usable(root: Root, pgd: int, role: int) -> bool:
        """mmu.c is_root_usable: valid, same pgd unless direct, same role word."""
        return root.valid & (roles.is_direct(role) | (pgd == root.pgd)) & (role == root.role)

    def kvm_mmu_free_roots(self, v: Vcpu, mmu: Mmu, roots_to_free: int) -> None:
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            self.free_root(v, mmu, i, truth(roots_to_free & ROOT_PREVIOUS(i)))
        self.free_root(v, mmu, -1, truth(roots_to_free & ROOT_CURRENT))

    def kvm_mmu_unload(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_unload: free every root of root_mmu and guest_mmu."""
        self.kvm_mmu_free_roots(v, v.root_mmu, ROOTS_ALL)
        self.kvm_mmu_free_roots(v, v.guest_mmu, ROOTS_ALL)

    def kvm_mmu_reset_context(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_reset_context: unload, then recompute the roles."""
        self.note("kvm_mmu_reset_context")
        self.kvm_mmu_unload(v)
        self.kvm_init_mmu(v)

    def kvm_mmu_reload(self, v: Vcpu) -> None:
        """mmu.h kvm_mmu_reload: load a root if the MMU has none."""
        if not v.mmu.root.valid:
            self.kvm_mmu_load(v)

    def kvm_mmu_load(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_load: allocate the root, sync it, load it and flush the current
        context ("the provenance of the root is unknown")."""
        mmu = v.mmu
        pgd = ite(roles.is_direct(mmu.root_role), 0, self.get_guest_pgd(v))
        self.alloc_root(v, mmu, pgd)
        self.kvm_mmu_sync_roots(v)
        self.kvm_vcpu_flush_tlb_current(v)

    def kvm_mmu_sync_roots(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_sync_roots: sync the current root (indirect MMUs only)."""
        self.sync_root(v, v.mmu.root)

    # -- TLB flushes (x86.c) --

    def kvm_vcpu_flush_tlb_all(self, v: Vcpu) -> None:
        """kvm_vcpu_flush_tlb_all -> vendor flush_tlb_all: every context of the vCPU."""
        self.flush_hw_context(v, 0)
        self.flush_hw_context(v, 1)

    def kvm_vcpu_flush_tlb_current(self, v: Vcpu) -> None:
        """vendor flush_tlb_current: the current root's context.  svm_flush_tlb_current: the
        running VMCB's ASID; vmx_flush_tlb_current: with EPT the current EPTP (every VPID's
        entries under it: ept_sync_context), without it vmx_get_current_vpid's VPID."""
        if self.cfg.nested == Nested.VMX and not self.cfg.tdp_enabled:
            self.flush_vpid(v, self.current_vpid01(v))
        else:
            self.flush_hw_context(v, self.current_ctx(v))

    def vendor_flush_tlb_guest(self, v: Vcpu) -> None:
        """svm_flush_tlb_guest: the running VMCB's ASID; vmx_flush_tlb_guest:
        vpid_sync_context of the VPID guest_flush_vpid01 names."""
        if self.cfg.nested == Nested.VMX:
            self.flush_vpid(v, self.guest_flush_vpid01(v))
        else:
            self.flush_hw_context(v, self.current_ctx(v))

    def vendor_flush_tlb_gva(self, v: Vcpu, gva: int) -> None:
        """vmx_flush_tlb_gva (INVVPID individual address, the VPID guest_flush_vpid01 names) /
        svm_flush_tlb_gva (INVLPGA in the running VMCB's ASID): one page, every PCID."""
        if self.hw_page_hit(v, gva):
            if self.cfg.nested == Nested.VMX:
                self.flush_vpid(v, self.guest_flush_vpid01(v))
            else:
                self.flush_hw_context(v, self.current_ctx(v))

    def current_vpid01(self, v: Vcpu) -> object:
        """Whether vmx_get_current_vpid, and before it vmx_flush_tlb_current, names vpid01
        rather than vpid02: up to v6.11, vpid02 whenever L2 is active, also for an L2 that
        runs on vpid01 (no VPID in vmcs12, vmx/nested.c prepare_vmcs02_early_rare).  The
        helper came with 2b4a5a5d5688 (v5.16, "KVM: nVMX: Flush current VPID (L1 vs. L2) for
        KVM_REQ_TLB_FLUSH_GUEST", <20211125014944.536398-2-seanjc@google.com>), whose
        pre-image has the same choice inline in vmx_flush_tlb_current."""
        return neg(truth(v.guest_mode))

    def guest_flush_vpid01(self, v: Vcpu) -> object:
        """Whether vmx_flush_tlb_guest and vmx_flush_tlb_gva flush vpid01: before v5.16 always
        ("vpid_sync_context(to_vmx(vcpu)->vpid)", the pre-image of 2b4a5a5d5688, which says
        "Any TLB flush that is triggered when L2 is active is scoped to L2's VPID (if it has
        one)"), also while an L2 with its own VPID runs."""
        return True

    def invlpg_root(self, v: Vcpu, root: Root, gva: int, when: object = True) -> None:
        """mmu->invlpg (paging_tmpl.h FNAME(invlpg)) if when holds: resync the gva's leaf SPTE
        under root."""
        self.sync_root(v, root, when & (gva & arch.PAGE_MASK == arch.WATCHED_VA), children=False)

    # -- register writes the vendor module does (vmx.c / svm.c set_cr0, set_cr4, set_efer) --

    def vendor_set_cr0(self, v: Vcpu, cr0: int) -> None:
        """vmx_set_cr0 / svm_set_cr0: enter or leave long mode with CR0.PG (SDM §9.8.5)."""
        v.regs.cr0 = cr0
        v.regs.efer = arch.with_lma(cr0, v.regs.efer)

    def vendor_set_cr4(self, v: Vcpu, cr4: int) -> None:
        v.regs.cr4 = cr4

    def vendor_set_efer(self, v: Vcpu, efer: int) -> None:
        v.regs.efer = efer

    # -- the entry points events reach --

    def intercepted(self, v: Vcpu, e: ev.Event) -> bool:
        """Does KVM see the event, or does the hardware execute it?  With EPT/NPT, INVPCID
        neither exits (VMX clears INVLPG exiting with EPT, vmx.c; SVM clears the INVPCID
        intercept with NPT, svm.c) nor is emulated, so the hardware performs it.  MOV CR3 and
        INVLPG stay modelled as KVM's: "MOV CR3 and INVPCID are usually not intercepted when
        using TDP, but this is reachable when running EPT=1 and unrestricted_guest=0, and also
        via the emulator" (x86.c kvm_invalidate_pcid).

        Except in L2 under nested EPT: vmcs02's CR3-load and INVLPG exiting are vmcs12's
        (vmx.c vmx_exec_control clears L0's with EPT; nested.c prepare_vmcs02_early ORs in
        vmcs12's), an exit L1 asked for is reflected to L1 (nested.c nested_vmx_exit_handled_cr,
        the model's vmexit event), L2 cannot clear CR0.PG without unrestricted guest
        (nested.c nested_guest_cr0_valid), and the emulator refuses CR writes and INVLPG in
        guest mode (vmx.c vmx_check_intercept, 07721feee46b, v5.6).  So KVM never runs its
        handler; the hardware executes the instruction under vmcs02.  Under nested NPT the
        emulator still reaches KVM: svm.c svm_check_intercept lets an instruction L1 does not
        intercept through, and em_cr_write calls kvm_set_cr3 (docs/findings.md F5).

        A MOV CR4 in L2 under VMX with EPT that changes only bits the guest owns
        (bits.CR4_GUEST_OWNED_EPT, PGE among them) does not exit either: vmcs02's guest/host
        mask is L0's (vmx.c set_cr4_guest_host_mask) with vmcs12's ORed in, a bit L1 claims
        exits to L1 (the vmexit event), and the emulator refuses CR writes in guest mode (as
        above).  L1's own such write stays KVM's, as MOV CR3 does: the route KVM's emulator
        takes (em_cr_write calls kvm_set_cr4); the hardware's route for it is not modelled
        (docs/model.md "Not modelled", and the caveat prove prints).  CR0.WP, the guest's with
        EPT since v6.4, stays KVM's (docs/model.md "Instructions the hardware executes")."""
        if isinstance(e, ev.Invpcid):
            return not (self.tdp_enabled and (not v.guest_mode or v.mmu_is_guest))
        if isinstance(e, (ev.MovCr3, ev.Invlpg)) and self.cfg.nested == "vmx":
            return not (v.guest_mode and v.mmu_is_guest)
        if isinstance(e, ev.MovCr4) and self.cfg.nested == "vmx" and self.tdp_enabled \
                and v.guest_mode:
            return (e.value ^ v.regs.cr4) & ~CR4_GUEST_OWNED_EPT != 0
        return True

    def handle(self, v: Vcpu, e: ev.Event) -> None:
        """Run KVM's handler for a (legal) event."""
        match e:
            case ev.MovCr0(value=value):
                self.kvm_set_cr0(v, arch.normalize_cr0(value))
            case ev.MovCr3(value=value):
                self.kvm_set_cr3(v, value)
            case ev.MovCr4(value=value):
                self.kvm_set_cr4(v, value)
            case ev.WrmsrEfer(value=value):
                self.set_efer(v, value)
            case ev.Invlpg(va=va):
                self.kvm_mmu_invlpg(v, va)
            case ev.Invpcid(type=t, pcid=pcid, va=va):
                self.kvm_handle_invpcid(v, t, pcid, va)
            case ev.GuestPteWrite(pgd=pgd):
                self.guest_pte_write(v, pgd)
            case ev.GuestPteWriteOther(pgd=pgd):
                self.guest_pte_write_other(v, pgd)
            case ev.PvTlbFlush():
                self.record_steal_time(v)
            case ev.Smi():
                self.enter_smm(v)
            case ev.Rsm():
                self.em_rsm(v)
            case ev.SetSregs():
                self.set_sregs(v, e)
            case ev.Init():
                self.kvm_vcpu_reset(v, init_event=True)
            case ev.CpuidUpdate():
                self.kvm_vcpu_after_set_cpuid(v)
            case ev.VmEntry():
                self.nested_enter(v, e)
            case ev.VmExit():
                self.nested_exit(v)
            case ev.Invvpid(type=t, vpid=vpid, va=va):
                self.handle_invvpid(v, t, vpid, va)
            case ev.Invlpga(va=va, asid=asid):
                self.invlpga(v, va, asid)
            case _:
                raise NotModeled(f"no KVM handler for {e.op}")

    def vcpu_enter_guest(self, v: Vcpu) -> None:
        """x86.c vcpu_enter_guest: service the MMU requests in the version's order, then
        kvm_mmu_reload."""
        raise NotImplementedError

    def start(self, v: Vcpu) -> None:
        """A vCPU whose registers were set before the first KVM_RUN: kvm_init_mmu as at vCPU
        creation (kvm_mmu_create + kvm_init_mmu), then the first entry loads a root."""
        self.kvm_init_mmu(v)

    # -- SMM (x86.c enter_smm / kvm_smm_changed; emulate.c em_rsm; v6.2+ smm.c) --

    def kvm_smm_changed(self, v: Vcpu, entering_smm: bool) -> None:
        """Flip HF_SMM_MASK and reset the MMU: the smm role bit changed."""
        v.smm = entering_smm
        self.kvm_mmu_reset_context(v)

    def enter_smm(self, v: Vcpu) -> None:
        """Save the state to SMRAM, then write CR0/CR4/EFER raw (static_call set_cr0/set_cr4/
        set_efer, not kvm_set_cr*) and reset the MMU."""
        r = v.regs
        v.smram = type(r)(r.cr0, r.cr3, r.cr4, r.efer)
        self.kvm_smm_changed(v, True)
        cr0 = r.cr0 & ~(CR0_PE | CR0_EM | CR0_TS | CR0_PG)
        self.vendor_set_cr0(v, cr0)
        self.vendor_set_cr4(v, 0)
        self.vendor_set_efer(v, 0)
        self.kvm_mmu_reset_context(v)

    def em_rsm(self, v: Vcpu) -> None:
        """emulate.c em_rsm (v5.x) / smm.c emulator_leave_smm (v6.2+): kvm_smm_changed(false)
        first (HF_SMM_MASK cleared, MMU reset), then leave 64-bit mode through kvm_set_cr4/cr0/
        efer, then rsm_load_state_64 -> rsm_enter_protected_mode."""
        self.kvm_smm_changed(v, False)
        if v.regs.cr4 & CR4_PCIDE:  # "Zero CR4.PCIDE before CR0.PG."
            self.kvm_set_cr4(v, v.regs.cr4 & ~CR4_PCIDE)
        if v.regs.cr0 & CR0_PE:
            self.kvm_set_cr0(v, v.regs.cr0 & ~(CR0_PG | CR0_PE))
        if v.regs.cr4 & CR4_PAE:  # "Clear CR4.PAE before clearing EFER.LME."
            self.kvm_set_cr4(v, v.regs.cr4 & ~CR4_PAE)
        self.set_efer(v, 0)
        s = v.smram
        self.set_efer(v, s.efer & ~EFER_LMA)
        self.rsm_enter_protected_mode(v, s.cr0, s.cr3, s.cr4)

    def rsm_enter_protected_mode(self, v: Vcpu, cr0: int, cr3: int, cr4: int) -> None:
        """emulate.c rsm_enter_protected_mode: CR3 without PCID, CR4 without PCIDE, CR0, then
        CR4 with PCIDE and CR3 with the PCID ("CR3[11:0] must be zero" to set PCIDE)."""
        pcid = 0
        if cr4 & CR4_PCIDE:
            pcid = cr3 & CR3_PCID_MASK
            cr3 &= ~CR3_PCID_MASK
        self.kvm_set_cr3(v, cr3)
        self.kvm_set_cr4(v, cr4 & ~CR4_PCIDE)
        self.kvm_set_cr0(v, cr0)
        if cr4 & CR4_PCIDE:
            self.kvm_set_cr4(v, cr4)
            if pcid:
                self.kvm_set_cr3(v, cr3 | pcid)

    # -- userspace (x86.c __set_sregs, kvm_vcpu_reset, kvm_vcpu_after_set_cpuid) --

    def set_sregs_common(self, v: Vcpu, e: ev.SetSregs) -> bool:
        """x86.c __set_sregs(_common): raw writes of CR3, EFER, CR0, CR4; returns
        mmu_reset_needed."""
        r = v.regs
        mmu_reset_needed = r.cr3 != e.cr3
        r.cr3 = e.cr3
        mmu_reset_needed |= r.efer != e.efer
        self.vendor_set_efer(v, e.efer)
        mmu_reset_needed |= r.cr0 != e.cr0
        self.vendor_set_cr0(v, e.cr0)
        mmu_reset_needed |= r.cr4 != e.cr4
        self.vendor_set_cr4(v, e.cr4)
        if self.is_pae_paging(v):
            mmu_reset_needed = True  # load_pdptrs
        return mmu_reset_needed

    def set_sregs(self, v: Vcpu, e: ev.SetSregs) -> None:
        if self.set_sregs_common(v, e):
            self.kvm_mmu_reset_context(v)

    def kvm_vcpu_after_set_cpuid(self, v: Vcpu) -> None:
        """cpuid.c kvm_vcpu_after_set_cpuid -> mmu.c kvm_mmu_after_set_cpuid: invalidate the
        cached roles and reset the MMU."""
        self.kvm_mmu_reset_context(v)

    def kvm_vcpu_reset(self, v: Vcpu, init_event: bool) -> None:
        """x86.c kvm_vcpu_reset for INIT: "CR0.CD/NW are set on RESET, preserved on INIT"
        (v5.15, "KVM: x86: Preserve guest's CR0.CD/NW on INIT"; docs/model.md D9 for the
        versions before), CR3 = CR4 = EFER = 0 through the vendor hooks, then (v5.14
        0aa1837533e5) reset the MMU if paging was on, and (v5.14 "KVM: x86: Flush the guest's
        TLB on INIT") request a guest TLB flush."""
        old_cr0 = v.regs.cr0
        new_cr0 = CR0_ET | old_cr0 & (CR0_NW | CR0_CD) if init_event \
            else CR0_ET | CR0_NW | CR0_CD
        self.vendor_set_cr0(v, new_cr0)
        v.regs.cr3 = 0
        self.vendor_set_cr4(v, 0)
        self.vendor_set_efer(v, 0)
        if old_cr0 & CR0_PG:
            self.kvm_mmu_reset_context(v)
        if init_event:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)

    # -- nested virtualization (vmx/nested.c, svm/nested.c) --

    def nested_enter(self, v: Vcpu, e: ev.VmEntry) -> None:
        if self.cfg.nested == "svm":
            self.enter_svm_guest_mode(v, e)
        else:
            self.nested_vmx_enter_non_root_mode(v, e)

    def nested_exit(self, v: Vcpu) -> None:
        if self.cfg.nested == "svm":
            self.nested_svm_vmexit(v)
        else:
            self.nested_vmx_vmexit(v)

    def nested_vmx_enter_non_root_mode(self, v: Vcpu, e: ev.VmEntry) -> None:
        """vmx/nested.c: enter_guest_mode, then prepare_vmcs02: transition flush, nested EPT
        MMU, guest CR0/CR4/EFER through the vendor hooks, nested_vmx_load_cr3."""
        r = v.regs
        v.l1 = type(r)(r.cr0, r.cr3, r.cr4, r.efer)
        v.guest_mode = True
        v.vpid12, v.nested_pgd = e.vpid, e.nested_pgd
        self.nested_vmx_transition_tlb_flush(v, is_vmenter=True)
        if self.cfg.nested_tdp:
            self.nested_ept_init_mmu_context(v)
        self.vendor_set_cr0(v, e.cr0)
        self.vendor_set_cr4(v, e.cr4)
        self.vendor_set_efer(v, e.efer)
        self.nested_vmx_load_cr3(v, e.cr3, self.cfg.nested_tdp)

    def nested_vmx_vmexit(self, v: Vcpu) -> None:
        """vmx/nested.c nested_vmx_vmexit -> leave_guest_mode, load_vmcs12_host_state."""
        v.guest_mode = False
        l1 = v.l1
        self.vendor_set_efer(v, l1.efer)
        self.vendor_set_cr0(v, l1.cr0)
        self.vendor_set_cr4(v, l1.cr4)
        if self.cfg.nested_tdp:
            self.nested_ept_uninit_mmu_context(v)
        self.nested_vmx_load_cr3(v, l1.cr3, False)
        self.nested_vmx_transition_tlb_flush(v, is_vmenter=False)

    def nested_vmx_transition_tlb_flush(self, v: Vcpu, is_vmenter: bool) -> None:
        """vmx/nested.c nested_vmx_transition_tlb_flush (v5.8+): without VPID for L2, L1
        expects VPID 0 flushed on every transition (the request is the version's
        vmx_transition_request); with it, a new VPID12 on VM-enter flushes (flush_new_vpid12,
        which changed in v5.16).  Every configuration has EPT or a vpid02, so
        nested_has_guest_tlb_tag() holds."""
        if not v.vpid12:
            self.kvm_make_request(v, self.vmx_transition_request)
            return
        if is_vmenter and v.vpid12 != v.last_vpid:
            v.last_vpid = v.vpid12
            self.flush_new_vpid12(v)

    def flush_new_vpid12(self, v: Vcpu) -> None:
        """What a VM entry with a new vpid12 flushes: vpid02 in hardware
        (vpid_sync_context(nested_get_vpid02(vcpu)))."""
        self.flush_vpid(v, False)

    def nested_ept_init_mmu_context(self, v: Vcpu) -> None:
        """vmx/nested.c nested_ept_init_mmu_context: mmu = guest_mmu, walk_mmu = nested_mmu;
        kvm_init_shadow_ept_mmu switches the guest_mmu to L1's EPTP (__kvm_mmu_new_pgd)."""
        v.mmu_is_guest = True
        self.kvm_init_mmu(v)
        self.nested_tdp_new_pgd(v, v.nested_pgd)

    def nested_ept_uninit_mmu_context(self, v: Vcpu) -> None:
        v.mmu_is_guest = False

    def enter_svm_guest_mode(self, v: Vcpu, e: ev.VmEntry) -> None:
        """svm/nested.c enter_svm_guest_mode: transition flush, nested NPT MMU, then
        nested_vmcb02_prepare_save (EFER, CR0, CR4) and nested_svm_load_cr3."""
        r = v.regs
        v.l1 = type(r)(r.cr0, r.cr3, r.cr4, r.efer)
        v.guest_mode = True
        v.vpid12, v.nested_pgd = e.vpid, e.nested_pgd
        self.nested_svm_transition_tlb_flush(v)
        if self.cfg.nested_tdp:
            v.mmu_is_guest = True
            self.kvm_init_mmu(v)
            self.nested_tdp_new_pgd(v, v.nested_pgd)
        self.vendor_set_efer(v, e.efer)
        self.vendor_set_cr0(v, e.cr0)
        self.vendor_set_cr4(v, e.cr4)
        self.nested_svm_load_cr3(v, e.cr3, self.cfg.nested_tdp)

    def nested_svm_vmexit(self, v: Vcpu) -> None:
        """svm/nested.c nested_svm_vmexit: leave_guest_mode, nested_svm_uninit_mmu_context,
        L1's EFER/CR0/CR4 from vmcb01, transition flush, nested_svm_load_cr3."""
        v.guest_mode = False
        v.mmu_is_guest = False
        l1 = v.l1
        self.vendor_set_efer(v, l1.efer)
        self.vendor_set_cr0(v, l1.cr0)
        self.vendor_set_cr4(v, l1.cr4)
        self.nested_svm_transition_tlb_flush(v)
        self.nested_svm_load_cr3(v, l1.cr3, False)

    def nested_svm_transition_tlb_flush(self, v: Vcpu) -> None:
        """svm/nested.c: "TODO: optimize unconditional TLB flush/MMU sync"."""
        self.kvm_make_request(v, Req.MMU_SYNC)
        self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)

    def handle_invvpid(self, v: Vcpu, type_: int, vpid: int, gva: int) -> None:
        """vmx/nested.c handle_invvpid: L1 names its own VPID12; KVM flushes vpid02
        (individual address or whole context).  kvm_mmu_free_guest_mode_roots is not
        modelled (guest_mode shadow roots are kept, as in v5.17)."""
        if type_ == 0:
            if self.hw_page_hit(v, gva):
                self.flush_vpid(v, False)
        else:
            self.flush_vpid(v, False)

    def invlpga(self, v: Vcpu, gva: int, asid: int) -> None:
        """svm.c invlpga_interception -> kvm_mmu_invlpg(vcpu, gva): KVM treats it as INVLPG."""
        self.kvm_mmu_invlpg(v, gva)
