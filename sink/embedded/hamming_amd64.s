//go:build !purego

#include "textflag.h"

// AVX-512 (F + VPOPCNTDQ) kernels of the Hamming scan. Each returns the
// start i of the first block of records (16, 8 or 4 records) holding one
// whose distance to q is under t1, and the block's lane mask (bit j set when
// 64-bit lane j of the block is under t1 after the per-record sums: lane j
// belongs to record i + j/words); or, when no block qualifies, the first
// record of the tail too short for a block and mask 0. hamming.go checks the
// flagged records and the tail exactly.

// func next1AVX512(c []uint64, q uint64, from, t1 int) (int, uint32)
TEXT ·next1AVX512(SB), NOSPLIT, $0-60
	MOVQ c_base+0(FP), SI
	MOVQ c_len+8(FP), DX
	MOVQ q+24(FP), AX
	MOVQ from+32(FP), CX
	MOVQ t1+40(FP), BX
	VPBROADCASTQ AX, Z0
	VPBROADCASTQ BX, Z1

loop1:
	LEAQ 16(CX), R8
	CMPQ R8, DX
	JGT  done1
	VPXORQ   (SI)(CX*8), Z0, Z2
	VPXORQ   64(SI)(CX*8), Z0, Z3
	VPOPCNTQ Z2, Z2
	VPOPCNTQ Z3, Z3
	VPCMPQ   $1, Z1, Z2, K1
	VPCMPQ   $1, Z1, Z3, K2
	KORTESTW K1, K2
	JNE      found1
	MOVQ     R8, CX
	JMP      loop1

found1:
	KMOVW K1, AX
	KMOVW K2, BX
	SHLL  $8, BX
	ORL   BX, AX
	MOVQ  CX, ret+48(FP)
	MOVL  AX, ret1+56(FP)
	VZEROUPPER
	RET

done1:
	MOVQ CX, ret+48(FP)
	MOVL $0, ret1+56(FP)
	VZEROUPPER
	RET

// func next2AVX512(c []uint64, q *[2]uint64, from, t1 int) (int, uint32)
TEXT ·next2AVX512(SB), NOSPLIT, $0-60
	MOVQ c_base+0(FP), SI
	MOVQ c_len+8(FP), DX
	MOVQ q+24(FP), AX
	MOVQ from+32(FP), CX
	MOVQ t1+40(FP), BX
	VBROADCASTI32X4 (AX), Z0
	VPBROADCASTQ    BX, Z1
	SHRQ $1, DX

loop2:
	LEAQ 8(CX), R8
	CMPQ R8, DX
	JGT  done2
	MOVQ CX, R9
	SHLQ $4, R9
	VPXORQ   (SI)(R9*1), Z0, Z2
	VPXORQ   64(SI)(R9*1), Z0, Z3
	VPOPCNTQ Z2, Z2
	VPOPCNTQ Z3, Z3
	VPSHUFD  $0x4e, Z2, Z4
	VPSHUFD  $0x4e, Z3, Z5
	VPADDQ   Z4, Z2, Z2
	VPADDQ   Z5, Z3, Z3
	VPCMPQ   $1, Z1, Z2, K1
	VPCMPQ   $1, Z1, Z3, K2
	KORTESTW K1, K2
	JNE      found2
	MOVQ     R8, CX
	JMP      loop2

found2:
	KMOVW K1, AX
	KMOVW K2, BX
	SHLL  $8, BX
	ORL   BX, AX
	MOVQ  CX, ret+48(FP)
	MOVL  AX, ret1+56(FP)
	VZEROUPPER
	RET

done2:
	MOVQ CX, ret+48(FP)
	MOVL $0, ret1+56(FP)
	VZEROUPPER
	RET

// func next4AVX512(c []uint64, q *[4]uint64, from, t1 int) (int, uint32)
TEXT ·next4AVX512(SB), NOSPLIT, $0-60
	MOVQ c_base+0(FP), SI
	MOVQ c_len+8(FP), DX
	MOVQ q+24(FP), AX
	MOVQ from+32(FP), CX
	MOVQ t1+40(FP), BX
	VBROADCASTI64X4 (AX), Z0
	VPBROADCASTQ    BX, Z1
	SHRQ $2, DX

loop4:
	LEAQ 4(CX), R8
	CMPQ R8, DX
	JGT  done4
	MOVQ CX, R9
	SHLQ $5, R9
	VPXORQ   (SI)(R9*1), Z0, Z2
	VPXORQ   64(SI)(R9*1), Z0, Z3
	VPOPCNTQ Z2, Z2
	VPOPCNTQ Z3, Z3
	VPSHUFD  $0x4e, Z2, Z4
	VPSHUFD  $0x4e, Z3, Z5
	VPADDQ   Z4, Z2, Z2
	VPADDQ   Z5, Z3, Z3
	VPERMQ   $0x4e, Z2, Z4
	VPERMQ   $0x4e, Z3, Z5
	VPADDQ   Z4, Z2, Z2
	VPADDQ   Z5, Z3, Z3
	VPCMPQ   $1, Z1, Z2, K1
	VPCMPQ   $1, Z1, Z3, K2
	KORTESTW K1, K2
	JNE      found4
	MOVQ     R8, CX
	JMP      loop4

found4:
	KMOVW K1, AX
	KMOVW K2, BX
	SHLL  $8, BX
	ORL   BX, AX
	MOVQ  CX, ret+48(FP)
	MOVL  AX, ret1+56(FP)
	VZEROUPPER
	RET

done4:
	MOVQ CX, ret+48(FP)
	MOVL $0, ret1+56(FP)
	VZEROUPPER
	RET
