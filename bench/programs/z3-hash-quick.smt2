; bench/programs/z3-hash-quick.smt2: the z3 workload of bench/run --quick.
; Inverts an integer hash (two rounds of xor-shift and multiply, a bijection
; on 32-bit words) with 24 of the 32 input bits given: each query has
; exactly one model.  z3 bit-blasts the multiplications afresh per query
; (push/pop), building and discarding large term and clause sets.
; Expected output: 'sat' and the x of each query, in order.
(set-logic QF_BV)
(declare-const x (_ BitVec 32))
(define-fun hash ((x (_ BitVec 32))) (_ BitVec 32)
  (let ((a0 (bvxor x (bvlshr x #x00000010))))
    (let ((b0 (bvmul a0 #x7feb352d)))
      (let ((c0 (bvxor b0 (bvlshr b0 #x0000000f))))
        (let ((d0 (bvmul c0 #x846ca68b)))
          (let ((a1 (bvxor d0 (bvlshr d0 #x00000010))))
            (let ((b1 (bvmul a1 #x7feb352d)))
              (let ((c1 (bvxor b1 (bvlshr b1 #x0000000f))))
                (let ((d1 (bvmul c1 #x846ca68b)))
                  d1)))))))))
(push 1)
(assert (= (bvand x #xffffff00) #x2265b100))
(assert (= (hash x) #x38b73b3c))
(check-sat)
(get-value (x))
(pop 1)
(push 1)
(assert (= (bvand x #xffffff00) #x91b75800))
(assert (= (hash x) #x987cb3f6))
(check-sat)
(get-value (x))
(pop 1)
