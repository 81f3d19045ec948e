"""wavlm_live.engine"""
