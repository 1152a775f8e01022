"""Official-card repayment (公务卡还款, issue 5): spending in (7101), review, repayment out (8202/2), result in."""
