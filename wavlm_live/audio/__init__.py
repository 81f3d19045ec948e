"""wavlm_live.audio"""
